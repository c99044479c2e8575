"""What the LLM extractor asks a model about one user message, and what of the answer it keeps.

The model returns a `UserProfile` (structured outputs): a role, expertise by topic, facts, and preferences
(verbosity, formats), each item with `span`, the exact words of the message it rests on. Small models invent
(a phone number, an email, a city the message never named), so every item passes a grounding check against
the message as it was sent (after PII redaction) before it becomes evidence:

- its span, compared without case and extra spaces, is in the message, and is at least MIN_SPAN_CHARS long;
- its value holds no placeholder of redacted PII ([phone], [email]...) and nothing redact_pii would replace;
- every digit in its value is in its span, and every content word of its value (a role, a topic, a fact)
  starts like a word of its span (first four letters: "nursing" rests on "nurse", "berlin" on nothing
  in "i am a nurse").

What fails is dropped and counted, never stored. What passes becomes findings like the rule extractors': key,
normalised value, weight, and an evidence kind (`llm:role`, `llm:fact`, `llm:expertise`, `llm:verbosity`,
`llm:format`) whose weight calibration fits per key family like every other kind.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from selfmodel.beliefs.extractors.base import Finding
from selfmodel.llm.pii import PLACEHOLDERS, redact_pii

NAME = "llm"
MIN_SPAN_CHARS = 3
MAX_FACT_WORDS = 12
MAX_ROLE_WORDS = 4


class RoleItem(BaseModel):
    role: str = Field(description="the user's occupation or role, e.g. 'nurse', 'data engineer'")
    span: str = Field(description="the exact words of the message that say it, copied verbatim")


class ExpertiseItem(BaseModel):
    topic: str = Field(description="a subject or tool, e.g. 'dbt', 'quantum computing'")
    level: Literal["novice", "intermediate", "expert"]
    span: str = Field(description="the exact words of the message that say it, copied verbatim")


class FactItem(BaseModel):
    fact: str = Field(description="a short first-person statement, e.g. 'i have two dogs'")
    span: str = Field(description="the exact words of the message that say it, copied verbatim")


class VerbosityItem(BaseModel):
    verbosity: Literal["concise", "detailed"] = Field(description="how long the user wants answers to be")
    span: str = Field(description="the exact words of the message that say it, copied verbatim")


class FormatItem(BaseModel):
    format: Literal["code", "math", "lists", "tables"] = Field(description="a form the user wants answers in")
    span: str = Field(description="the exact words of the message that say it, copied verbatim")


class UserProfile(BaseModel):
    """What one message says about its author. Empty lists and nulls when it says nothing."""

    role: RoleItem | None
    expertise: list[ExpertiseItem]
    facts: list[FactItem]
    verbosity: VerbosityItem | None
    formats: list[FormatItem]


SYSTEM_PROMPT = """You read one message a user wrote to an AI assistant and note what the user says about \
themselves, in their own words.
Return only what the message itself states about its author:
- role: their occupation or role, if they state it ("I'm a nurse").
- expertise: subjects or tools and how well they know them, if they say so ("I'm new to Rust" -> novice).
- facts: lasting personal facts, each as a short first-person statement ("i have two dogs").
- verbosity and formats: how they want answers ("keep it short" -> concise; "use bullet points" -> lists).
Every item has `span`: the exact words from the message that state it, copied character for character.
Do not guess, infer from the topic of a question, or describe anyone but the author. Placeholders like \
[email] or [phone] stand for removed personal data: never put them in an item. When the message states \
nothing about its author, return empty lists and nulls."""

# Part of the cache key: a change to the prompt, the schema or the redaction asks every message again.
PROMPT_VERSION = "1-" + hashlib.sha256(
    json.dumps([SYSTEM_PROMPT, UserProfile.model_json_schema(), PLACEHOLDERS], sort_keys=True).encode()
).hexdigest()[:8]

# Base weights of what a message states; beliefs.extractors.llm.weight multiplies them, calibration fits them.
WEIGHTS = {"role": 1.0, "expertise": 1.0, "fact": 1.0, "verbosity": 1.0, "format": 1.0}

# Words a value may add to its span without inventing anything.
_STOPWORDS = frozenset("""
a an the i i'm im me my mine am is are was were be been being have has had having got do does did to of in on at
for with and or as by from into about very really also just so that this it its not no one some any like love
lot lots much many more most work works working job their they them he she his her we our
one two three four five six seven eight nine ten eleven twelve
""".split())
_WORD = re.compile(r"[a-z0-9][a-z0-9'+#.-]*")


@dataclass(frozen=True)
class ExtractedItem:
    """One grounded item, as cached (table llm_extractions.items) and turned into a Finding."""

    key: str
    value: str
    kind: str  # role | expertise | fact | verbosity | format: the evidence kind is llm:<kind>
    weight: float
    span: str

    def to_json(self) -> dict:
        return {"key": self.key, "value": self.value, "kind": self.kind, "weight": self.weight, "span": self.span}

    @classmethod
    def from_json(cls, data: dict) -> "ExtractedItem":
        return cls(str(data["key"]), str(data["value"]), str(data["kind"]), float(data["weight"]), str(data["span"]))

    def finding(self) -> Finding:
        return Finding(self.key, self.value, self.weight, kind=self.kind)


def messages_for(text: str, max_chars: int) -> tuple[list[dict], str]:
    """The chat messages asking about `text`, and the text as sent: PII replaced, then cut at max_chars (in that
    order: a phone number cut in half would no longer look like one)."""
    sent = redact_pii(text).text[:max_chars]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": sent}], sent


def _normalised(text: str) -> str:
    text = text.casefold().replace("\u2019", "'")
    return re.sub(r"\s+", " ", text).strip()


def _span_in_message(span: str, message: str) -> bool:
    span = _normalised(span).strip(" \"'.,;:!?")
    return len(span) >= MIN_SPAN_CHARS and span in _normalised(message)


def _content_words(value: str) -> list[str]:
    return [word.strip(".'-") for word in _WORD.findall(_normalised(value)) if word.strip(".'-") not in _STOPWORDS
            and not word.isdigit() and len(word.strip(".'-")) >= 2]


def _rests_on(value: str, span: str) -> bool:
    """Every digit run and content word of `value` is found in `span` (a word by its first four letters)."""
    normal_span = _normalised(span)
    if any(digits not in re.sub(r"\D", " ", normal_span).split() for digits in re.findall(r"\d+", value)):
        return False
    prefixes = {word[:4] for word in _WORD.findall(normal_span)}
    return all(word[:4] in prefixes for word in _content_words(value))


def _holds_pii(value: str) -> bool:
    return any(placeholder in value for placeholder in PLACEHOLDERS) or bool(redact_pii(value).found)


def _clean_phrase(value: str) -> str:
    value = re.sub(r"[^\w' +#.-]", " ", _normalised(value))
    return re.sub(r"\s+", " ", value).strip(" .'-")


def _role_value(role: str, role_lookup) -> str | None:
    phrase = re.sub(r"^(?:an?|the)\s+", "", _clean_phrase(role))
    if not phrase or len(phrase.split()) > MAX_ROLE_WORDS:
        return None
    return (role_lookup(phrase) if role_lookup else None) or phrase


def _topic_key(topic: str) -> str | None:
    slug = re.sub(r"[^a-z0-9+#.]+", "-", _normalised(topic)).strip("-.")
    return f"expertise@{slug}" if slug else None


@dataclass(frozen=True)
class Grounded:
    items: list[ExtractedItem]
    dropped: int  # items whose span was not in the message, or whose value was not from their span


def ground(profile: UserProfile, sent: str, role_lookup=None) -> Grounded:
    """The items of `profile` that rest on `sent` (the message as sent), normalised; the others counted.

    `role_lookup(phrase) -> role | None` maps a role phrase to the role lexicon's name (RoleExtractor.lookup),
    so "registered nurse" is the rule extractor's "nurse"; a phrase it does not know stays as said."""
    candidates: list[tuple[str, str, str, str, str | None]] = []  # (kind, key, value, span, words that must rest)
    if profile.role is not None:
        value = _role_value(profile.role.role, role_lookup)
        candidates.append(("role", "role", value or "", profile.role.span, profile.role.role))
    for item in profile.expertise:
        key = _topic_key(item.topic)
        candidates.append(("expertise", key or "", item.level, item.span, item.topic))
    for item in profile.facts:
        fact = _clean_phrase(item.fact)
        too_long = len(fact.split()) > MAX_FACT_WORDS
        candidates.append(("fact", "fact", "" if too_long else fact, item.span, item.fact))
    if profile.verbosity is not None:
        candidates.append(("verbosity", "style.verbosity", profile.verbosity.verbosity, profile.verbosity.span, None))
    for item in profile.formats:
        candidates.append(("format", "style.format", item.format, item.span, None))
    kept: dict[tuple[str, str], ExtractedItem] = {}
    dropped = 0
    for kind, key, value, span, said in candidates:
        grounded = (bool(key) and bool(value) and _span_in_message(span, sent) and not _holds_pii(span)
                    and (said is None or (not _holds_pii(said) and _rests_on(said, span))))
        if not grounded:
            dropped += 1
            continue
        kept.setdefault((key, value), ExtractedItem(key, value, kind, WEIGHTS[kind], _normalised(span)))
    return Grounded(list(kept.values()), dropped)
