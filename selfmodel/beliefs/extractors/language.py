"""language: the language of the user's own messages, by py3langid (its model ships in the package;
nothing is downloaded). Short or unclear text gives no evidence rather than a guess.

Scripts that name their language outright (Han without kana: Chinese; kana: Japanese; Hangul:
Korean; Thai) are decided by counting characters, which is exact where the n-gram model is unsure
on a short line; everything else goes to the model.
"""

from __future__ import annotations

import re
from functools import cache

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean, word_units

NAME, VERSION = "language", "2"

MIN_WORDS = 3
MIN_LETTERS = 12
MIN_PROBABILITY = 0.8
MAX_CHARS = 400
LETTER = re.compile(r"[^\W\d_]")
MIN_SCRIPT_SHARE = 0.8  # of the letters, for a script to decide the language
SCRIPTS = {
    "han": re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),
    "kana": re.compile(r"[\u3040-\u30ff]"),
    "hangul": re.compile(r"[\uac00-\ud7af\u1100-\u11ff]"),
    "thai": re.compile(r"[\u0e00-\u0e7f]"),
}


@cache
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def _by_script(prose: str, letters: int) -> tuple[str, float] | None:
    counts = {name: len(pattern.findall(prose)) for name, pattern in SCRIPTS.items()}
    east_asian = counts["han"] + counts["kana"]
    if counts["kana"] and east_asian / letters >= MIN_SCRIPT_SHARE:
        return "ja", round(east_asian / letters, 3)
    for name, language in (("han", "zh"), ("hangul", "ko"), ("thai", "th")):
        if counts[name] / letters >= MIN_SCRIPT_SHARE:
            return language, round(counts[name] / letters, 3)
    return None


def detect(prose: str) -> tuple[str, float] | None:
    """(ISO 639-1 code, probability) when the text is long and clear enough, else None."""
    letters = len(LETTER.findall(prose))
    if not letters or word_units(prose) < MIN_WORDS:
        return None
    by_script = _by_script(prose, letters)
    if by_script is not None:
        return by_script
    if letters < MIN_LETTERS:
        return None
    # The first few hundred characters decide as well as the whole text, at a fraction of the cost.
    language, probability = _identifier().classify(prose[:MAX_CHARS])
    return (language, float(probability)) if probability >= MIN_PROBABILITY else None


class LanguageExtractor:
    name, version = NAME, VERSION

    def __call__(self, event: EventView) -> list[Finding]:
        if not is_authored_message(event):
            return []
        text = clean(event.text)
        if text.is_command:
            return []
        found = detect(text.prose)
        return [Finding("language", found[0], found[1])] if found else []
