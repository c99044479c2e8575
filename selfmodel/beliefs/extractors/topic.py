"""topic: what the user talks about. Tags when the source gives them, else an editable keyword taxonomy."""

from __future__ import annotations

import re

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean

NAME, VERSION = "topic", "2"


def normalised_tags(tags: tuple[str, ...]) -> list[str]:
    """Lower case, trimmed, each once ("Qubit" and "qubit" are one topic), empty tags dropped."""
    return list(dict.fromkeys(tag.strip().lower() for tag in tags if tag and tag.strip()))


class TopicExtractor:
    name, version = NAME, VERSION
    content_only = True  # without a target, its findings read no ids and no time (observe.observations_of_page)

    def __init__(self, taxonomy: dict[str, list[str]]) -> None:
        # One alternation per topic, on whole words, so "art" does not fire inside "start"; lookarounds
        # rather than \b so that keywords ending in a symbol ("c++", "q#") match too.
        self.patterns = {
            topic: re.compile(r"(?<!\w)(?:" + "|".join(re.escape(k.lower()) for k in sorted(keywords, key=len, reverse=True))
                              + r")(?!\w)")
            for topic, keywords in taxonomy.items() if keywords
        }
        # Every keyword of every topic in one pattern: a text it does not match matches no topic, so most
        # texts need one search instead of one per topic. (Only a filter: one match can hide another.)
        keywords = sorted({k.lower() for ks in taxonomy.values() for k in ks}, key=len, reverse=True)
        self.any_topic = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(k) for k in keywords) + r")(?!\w)") \
            if keywords else None

    def __call__(self, event: EventView) -> list[Finding]:
        if not is_authored_message(event):
            return []
        if event.tags:
            return [Finding("topic", tag, 1.0, kind="tag") for tag in normalised_tags(event.tags)]
        text = clean(event.text)
        if text.is_command or not text.prose:
            return []
        prose = text.prose.lower()
        if self.any_topic is None or not self.any_topic.search(prose):
            return []
        return [Finding("topic", topic, 0.5, kind="keyword") for topic, pattern in self.patterns.items() if pattern.search(prose)]
