"""style.verbosity (concise / detailed) and style.format (code, math, lists).

From the user's own messages (how they write) and, more strongly, from their feedback on responses
(what they want back): a thumbs-down on a long response is evidence for "concise", a thumbs-up on a
response with code, math or a list is evidence that they want that format. A thumbs-down says nothing
about format (it may be the content they disliked), and style.format holds several values, none of
which a dislike could lower.
"""

from __future__ import annotations

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean

NAME, VERSION = "style", "3"

# A one- or two-word message ("ok", "hi there") says nothing about how someone likes to write.
MIN_MESSAGE_WORDS = 3
SHORT_MESSAGE_WORDS = 12
LONG_MESSAGE_WORDS = 150
LONG_RESPONSE_WORDS = 40
SHORT_RESPONSE_WORDS = 8


class StyleExtractor:
    name, version = NAME, VERSION
    content_only = True  # without a target, its findings read no ids and no time (observe.observations_of_page)

    def __call__(self, event: EventView) -> list[Finding]:
        if is_authored_message(event):
            text = clean(event.text)
            if text.is_command:
                return []
            findings = []
            if MIN_MESSAGE_WORDS <= text.words <= SHORT_MESSAGE_WORDS:
                findings.append(Finding("style.verbosity", "concise", 0.2))
            elif text.words >= LONG_MESSAGE_WORDS:
                findings.append(Finding("style.verbosity", "detailed", 0.2))
            for present, value in ((text.has_code, "code"), (text.has_math, "math"), (text.has_list, "lists")):
                if present:
                    findings.append(Finding("style.format", value, 0.5))
            return findings
        if event.kind == "feedback" and event.rating is not None and event.target is not None \
                and event.target.kind == "response":
            text = clean(event.target.text)
            liked = event.rating > 0
            findings = []
            if not liked and text.words >= LONG_RESPONSE_WORDS:
                findings.append(Finding("style.verbosity", "concise", 1.0, kind="thumbs_down"))
            elif not liked and 0 < text.words <= SHORT_RESPONSE_WORDS:
                findings.append(Finding("style.verbosity", "detailed", 0.5, kind="thumbs_down"))
            elif liked and text.words >= LONG_RESPONSE_WORDS:
                findings.append(Finding("style.verbosity", "detailed", 0.5, kind="thumbs_up"))
            if liked:
                for present, value in ((text.has_code, "code"), (text.has_math, "math"), (text.has_list, "lists")):
                    if present:
                        findings.append(Finding("style.format", value, 0.5, kind="thumbs_up"))
            return findings
        return []
