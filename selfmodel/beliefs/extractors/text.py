"""Turning messy message text into prose the extractors can read, and noting what was removed.

Real messages carry code blocks, inline code, LaTeX, URLs, HTML remnants, quoted text and slash
commands. Language detection and phrase patterns must not read those as words, while the style
extractor wants to know they were there.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

FENCED_CODE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
HTML_CODE = re.compile(r"<(pre|code)\b[^>]*>.*?(?:</\1>|\Z)", re.DOTALL | re.IGNORECASE)
INDENTED_CODE = re.compile(r"(?m)^(?: {4}|\t)\S.*$")
INLINE_CODE = re.compile(r"`[^`\n]+`")
DISPLAY_MATH = re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]", re.DOTALL)
INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)[^$\n]{1,300}?(?<!\s)\$|\\\(.+?\\\)")
URL = re.compile(r"https?://\S+|www\.\S+")
HTML_QUOTE = re.compile(r"<blockquote\b[^>]*>.*?(?:</blockquote>|\Z)", re.DOTALL | re.IGNORECASE)
HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")
HTML_ENTITY = re.compile(r"&(?:[a-z]+|#\d+|#x[0-9a-f]+);", re.IGNORECASE)
# Markdown block quotes (Stack Exchange bodies render <blockquote> as "> " lines): someone else's words.
QUOTED_LINE = re.compile(r"(?m)^[ \t]*>.*$")
# "the context the person gave was: "i am a materials scientist"": reported speech, not a self-disclosure.
QUOTATION = re.compile(r"\"[^\"\n]{1,600}\"|“[^”\n]{1,600}”|„[^“”\n]{1,600}[“”]|«[^»\n]{1,600}»")
LIST_LINE = re.compile(r"(?m)^\s*(?:[-*•]|\d+[.)])\s+\S")
SLASH_COMMAND = re.compile(r"^\s*/[a-z_]+(?:@\w+)?(?:\s|$)", re.IGNORECASE)
WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
# Scripts written without spaces between words: each character counts as a word.
UNSPACED_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f]")

CONTRACTIONS = [
    (re.compile(r"\bi ?'? ?m\b"), "i am"),  # i'm, im, "i m", "i 'm"
    (re.compile(r"\bi ?'?ve\b"), "i have"),
    (re.compile(r"\bi'd\b"), "i would"),
    (re.compile(r"\bi'll\b"), "i will"),
    (re.compile(r"\bwon'?t\b"), "will not"),
    (re.compile(r"\bcan'?t\b"), "cannot"),
    (re.compile(r"\b(do|does|did|is|are|was|were|have|has|had|could|would|should)n'?t\b"), r"\1 not"),
]
# A sentence holding one of these is not a plain statement about the speaker's present.
HYPOTHETICAL = re.compile(r"\b(?:if|would|could|might|should|wish|suppose|imagine|pretend|unless|were)\b"
                          r"|^(?:say|let's say|let us say|assume|assuming|consider)\b")
# Opinion hedges: "i think i have a dog" is no fact, but "as a physicist, i think ..." still declares a role.
OPINION = re.compile(r"\b(?:maybe|perhaps|probably|i think|i guess|i believe|i suppose|kind of|sort of)\b")
# Text without any of these holds no code, math, URL, markup, entity or quoted line: clean() only tidies its
# spaces (each pattern above needs one of them: ``` and ` code, < tags and quotes, $ and \ math, & entities,
# > quoted lines, four spaces or a tab indented code).
MARKUP_CHARACTERS = re.compile(r"[`<>$\\&\t]|    |http|www\.")
# normalise_phrase's contractions can only apply where one of these occurs: spelling them out is a no-op elsewhere.
CONTRACTION_HINT = re.compile(r"\bi ?'? ?m\b|\bi ?'?ve\b|\bi'd\b|\bi'll\b|\bwon'?t\b|\bcan'?t\b|n'?t\b")
SARCASM = re.compile(r"\b(?:obviously|lol|lmao|lmfao|rofl|jk|kidding|yeah right|as if)\b|(?:^|\s)/s\b")


@dataclass(frozen=True)
class CleanText:
    prose: str  # words only: no code, math, URLs, markup or quoted lines
    has_code: bool
    has_math: bool
    has_list: bool
    is_command: bool  # a slash command ("/start"), not something the user said
    words: int  # words of prose


@lru_cache(maxsize=32768)  # a page's distinct texts (observe.FETCH_ROWS), read by several extractors
def clean(text: str | None) -> CleanText:
    text = text or ""
    is_command = bool(SLASH_COMMAND.match(text))
    if not MARKUP_CHARACTERS.search(text):  # the common case: nothing to remove
        prose = re.sub(r"[ \t\xa0]+", " ", text).strip()
        # Two list lines need two lines.
        has_list = "\n" in text and len(LIST_LINE.findall(text)) >= 2
        return CleanText(prose, False, False, has_list, is_command, word_units(prose))
    has_code = bool(FENCED_CODE.search(text) or HTML_CODE.search(text) or INLINE_CODE.search(text)
                    or INDENTED_CODE.search(text))
    prose = FENCED_CODE.sub(" ", text)
    prose = HTML_CODE.sub(" ", prose)
    prose = INDENTED_CODE.sub(" ", prose)
    prose = INLINE_CODE.sub(" ", prose)
    has_math = bool(DISPLAY_MATH.search(prose) or INLINE_MATH.search(prose))
    prose = DISPLAY_MATH.sub(" ", prose)
    prose = INLINE_MATH.sub(" ", prose)
    has_list = len(LIST_LINE.findall(prose)) >= 2
    prose = URL.sub(" ", prose)
    prose = HTML_QUOTE.sub("\n", prose)
    prose = HTML_TAG.sub(" ", prose)
    prose = HTML_TAG.sub(" ", html.unescape(prose))  # "&lt;b&gt;" is a tag once unescaped
    prose = HTML_ENTITY.sub(" ", prose)
    prose = QUOTED_LINE.sub(" ", prose)
    prose = re.sub(r"[ \t\xa0]+", " ", prose).strip()
    return CleanText(prose, has_code, has_math, has_list, is_command, word_units(prose))


def word_units(prose: str) -> int:
    """Words, counting each character of a script written without spaces (Chinese, Japanese, Thai) as one."""
    if prose.isascii():  # no unspaced script
        return len(WORD.findall(prose))
    unspaced = len(UNSPACED_SCRIPT.findall(prose))
    return len(WORD.findall(UNSPACED_SCRIPT.sub(" ", prose))) + unspaced


def normalise_phrase(text: str) -> str:
    """Lower case, straight apostrophes, contractions spelled out, single spaces."""
    lowered = text.lower().replace("’", "'").replace("‘", "'").replace("`", "'")
    if CONTRACTION_HINT.search(lowered):
        for pattern, replacement in CONTRACTIONS:
            lowered = pattern.sub(replacement, lowered)
    return re.sub(r"\s+", " ", lowered).strip()


def sentences(prose: str) -> list[str]:
    """Sentences in order, each once: a bot loop repeating a line says it once. A stop followed by a
    letter without a space ("i love coffee .i love tea") ends a sentence too; one between digits does not."""
    parts = re.split(r"(?<=[.!?])\s+|(?<=[.!?])(?=[^\W\d_])|\n+", prose)
    return list(dict.fromkeys(part.strip() for part in parts if part.strip()))


def own_statements(text: str | None, opinions: bool = False) -> list[str]:
    """The sentences a message states in the author's own voice (see _own_statements)."""
    return list(_own_statements(text, opinions))


@lru_cache(maxsize=1024)  # role, fact and expertise read the same message one after another
def _own_statements(text: str | None, opinions: bool = False) -> tuple[str, ...]:
    """The sentences a message states in the author's own voice, normalised (normalise_phrase): no
    slash command, no quoted or quotation-marked text, no questions, nothing hypothetical or sarcastic,
    and no opinion hedges ("i think", "probably") unless `opinions`. What self-disclosure extractors read."""
    if not opinions:  # the same sentences less the hedged ones: reuse the (cached) list with opinions
        return tuple(statement for statement in _own_statements(text, True) if not OPINION.search(statement))
    cleaned = clean(text)
    if cleaned.is_command or not cleaned.prose:
        return []
    statements = []
    for sentence in sentences(QUOTATION.sub("\n", cleaned.prose)):
        if sentence.endswith("?"):
            continue
        phrase = normalise_phrase(sentence)
        if HYPOTHETICAL.search(phrase) or SARCASM.search(phrase) or not opinions and OPINION.search(phrase):
            continue
        statements.append(phrase)
    return tuple(statements)


def word_count(text: str | None) -> int:
    return clean(text).words
