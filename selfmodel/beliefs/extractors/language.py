"""language: the language of the user's own messages, by py3langid (its model ships in the package;
nothing is downloaded). Short or unclear text gives no evidence rather than a guess."""

from __future__ import annotations

from functools import cache

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean

NAME, VERSION = "language", "1"

MIN_WORDS = 3
MIN_LETTERS = 12
MIN_PROBABILITY = 0.8


@cache
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def detect(prose: str) -> tuple[str, float] | None:
    """(ISO 639-1 code, probability) when the text is long and clear enough, else None."""
    letters = sum(char.isalpha() for char in prose)
    if letters < MIN_LETTERS or len(prose.split()) < MIN_WORDS:
        return None
    language, probability = _identifier().classify(prose)
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
