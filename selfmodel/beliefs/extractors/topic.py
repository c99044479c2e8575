"""topic: what the user talks about. Tags when the source gives them, else an editable keyword taxonomy."""

from __future__ import annotations

import re

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean

NAME, VERSION = "topic", "1"


class TopicExtractor:
    name, version = NAME, VERSION

    def __init__(self, taxonomy: dict[str, list[str]]) -> None:
        # One alternation per topic, on word boundaries, so "art" does not fire inside "start".
        self.patterns = {
            topic: re.compile(r"\b(?:" + "|".join(re.escape(k.lower()) for k in sorted(keywords, key=len, reverse=True)) + r")\b")
            for topic, keywords in taxonomy.items() if keywords
        }

    def __call__(self, event: EventView) -> list[Finding]:
        if not is_authored_message(event):
            return []
        if event.tags:
            return [Finding("topic", tag.lower(), 1.0) for tag in dict.fromkeys(event.tags)]
        text = clean(event.text)
        if text.is_command or not text.prose:
            return []
        prose = text.prose.lower()
        return [Finding("topic", topic, 0.5) for topic, pattern in self.patterns.items() if pattern.search(prose)]
