"""Turning messy message text into prose the extractors can read, and noting what was removed.

Real messages carry code blocks, inline code, LaTeX, URLs, HTML remnants and slash commands. Language
detection and phrase patterns must not read those as words, while the style extractor wants to know
they were there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

FENCED_CODE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
INDENTED_CODE = re.compile(r"(?m)^(?: {4}|\t)\S.*$")
INLINE_CODE = re.compile(r"`[^`\n]+`")
DISPLAY_MATH = re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]", re.DOTALL)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)[^$\n]{1,300}?(?<!\s)\$|\\\(.+?\\\)")
URL = re.compile(r"https?://\S+|www\.\S+")
HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")
HTML_ENTITY = re.compile(r"&(?:[a-z]+|#\d+|#x[0-9a-f]+);", re.IGNORECASE)
LIST_LINE = re.compile(r"(?m)^\s*(?:[-*•]|\d+[.)])\s+\S")
SLASH_COMMAND = re.compile(r"^\s*/[a-z_]+\b", re.IGNORECASE)
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)

CONTRACTIONS = [
    (re.compile(r"\bi'?m\b"), "i am"),
    (re.compile(r"\bi've\b"), "i have"),
    (re.compile(r"\bi'd\b"), "i would"),
    (re.compile(r"\bi'll\b"), "i will"),
    (re.compile(r"\bdon't\b"), "do not"),
    (re.compile(r"\bcan't\b"), "cannot"),
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bisn't\b"), "is not"),
]


@dataclass(frozen=True)
class CleanText:
    prose: str  # words only: no code, math, URLs or markup
    has_code: bool
    has_math: bool
    has_list: bool
    is_command: bool  # a slash command ("/start"), not something the user said
    words: int  # words of prose


@lru_cache(maxsize=4096)
def clean(text: str | None) -> CleanText:
    text = text or ""
    is_command = bool(SLASH_COMMAND.match(text))
    has_code = bool(FENCED_CODE.search(text) or INLINE_CODE.search(text) or INDENTED_CODE.search(text))
    prose = FENCED_CODE.sub(" ", text)
    prose = INDENTED_CODE.sub(" ", prose)
    prose = INLINE_CODE.sub(" ", prose)
    has_math = bool(DISPLAY_MATH.search(prose) or INLINE_MATH.search(prose))
    prose = DISPLAY_MATH.sub(" ", prose)
    prose = INLINE_MATH.sub(" ", prose)
    has_list = len(LIST_LINE.findall(prose)) >= 2
    prose = URL.sub(" ", prose)
    prose = HTML_TAG.sub(" ", prose)
    prose = HTML_ENTITY.sub(" ", prose)
    prose = re.sub(r"[ \t]+", " ", prose).strip()
    return CleanText(prose, has_code, has_math, has_list, is_command, len(WORD.findall(prose)))


def normalise_phrase(text: str) -> str:
    """Lower case, straight apostrophes, contractions spelled out, single spaces."""
    lowered = text.lower().replace("’", "'").replace("`", "'")
    for pattern, replacement in CONTRACTIONS:
        lowered = pattern.sub(replacement, lowered)
    return re.sub(r"\s+", " ", lowered).strip()


def sentences(prose: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+|\n+", prose) if part.strip()]


def word_count(text: str | None) -> int:
    return clean(text).words
