"""fact: things users disclose about themselves ("i have two dogs", "my favorite band is queen"),
normalised to short first-person statements so the same fact said twice is the same value.
Questions and hypotheticals are skipped."""

from __future__ import annotations

import re

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean, normalise_phrase, sentences

NAME, VERSION = "fact", "1"

MAX_WORDS = 10
# "i am a nurse and i have two dogs" holds two statements.
CLAUSE_BREAK = re.compile(r",? (?:and|but|so|also) (?=(?:i|my|i'm|i've) )|[,;] (?=(?:i|my|i'm|i've) )", re.IGNORECASE)
OPENERS = re.compile(r"^(?:well|so|yes|yeah|no|oh|haha|lol|ok|okay|actually|also|and|but|hi|hello|hey)\b[ ,!]*")
STATEMENTS = [
    # "i have two dogs", not "i have edited the post" (present perfect tells what was done, not what is).
    re.compile(r"^i (?:have|own|got) (?!to\b|no idea\b|a question\b|an? (?:answer|idea|doubt)\b"
               r"|(?:been|done|made|seen|read|written|heard|found|got|given|taken|put|just|already|also|never"
               r"|always|not|no|only|ever|now|still)\b|[\w-]+ed\b)(.+)"),
    re.compile(r"^my (?:favorite|favourite) (.+?) (?:is|are) (.+)"),
    re.compile(r"^i (?:love|like|enjoy|hate|prefer) (?!you\b|it\b|that\b|this\b)(.+)"),
    re.compile(r"^i (?:live|grew up) in (.+)"),
    re.compile(r"^i am from (.+)"),
    re.compile(r"^i (?:work|study) (?:at|in|for|as) (.+)"),
    re.compile(r"^i (?:play|drive|speak|collect|volunteer|cook|paint|run|swim) (.+)"),
    re.compile(r"^my (?!favorite|favourite)(\w+) (?:is|are|was) (.+)"),
    re.compile(r"^i am (?:a |an )?(?:vegan|vegetarian|married|single|divorced|retired|\d+ years old)\b.*"),
]


def normalise_fact(sentence: str) -> str | None:
    """The sentence as a short fact, or None when it states no fact about the speaker."""
    phrase = normalise_phrase(sentence)
    if not phrase or phrase.endswith("?") or re.search(r"\b(?:if|would|could|maybe|wish)\b", phrase):
        return None
    phrase = OPENERS.sub("", phrase)
    phrase = re.sub(r"[^\w' -]", " ", phrase)
    phrase = re.sub(r"\s+", " ", phrase).strip()
    if not any(pattern.match(phrase) for pattern in STATEMENTS):
        return None
    words = phrase.split()
    return " ".join(words[:MAX_WORDS]) if len(words) >= 3 else None


class FactExtractor:
    name, version = NAME, VERSION

    def __call__(self, event: EventView) -> list[Finding]:
        if not is_authored_message(event):
            return []
        text = clean(event.text)
        if text.is_command:
            return []
        clauses = [clause for sentence in sentences(text.prose) for clause in CLAUSE_BREAK.split(sentence)]
        facts = {fact for clause in clauses if (fact := normalise_fact(clause))}
        return [Finding("fact", fact, 1.0) for fact in sorted(facts)]
