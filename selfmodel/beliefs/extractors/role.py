"""role: what the user says they are ("I'm a nurse", "as a developer", "I work as a teacher"),
normalised through an editable lexicon. Phrases the lexicon does not know give no evidence: a wrong
role is worse than none."""

from __future__ import annotations

import re

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean, normalise_phrase

NAME, VERSION = "role", "1"

# (pattern, weight): "as a ..." is often hypothetical ("as a beginner I wonder"), so it counts less.
DECLARATIONS = [
    (re.compile(r"\bi (?:work|am working|have worked) as (?:a |an )?([a-z][a-z -]{1,60})"), 1.0),
    (re.compile(r"\bi am (?:a |an )([a-z][a-z -]{1,60})"), 1.0),
    (re.compile(r"\bmy (?:job|profession|occupation) is (?:a |an )?([a-z][a-z -]{1,60})"), 1.0),
    (re.compile(r"\bas an? ([a-z][a-z -]{1,60})"), 0.5),
]
PHRASE_END = re.compile(r"\b(?:and|but|who|which|that|so|because|in|at|from|with|for|of|on|to)\b|[,.;:!?]")


class RoleExtractor:
    name, version = NAME, VERSION

    def __init__(self, lexicon: dict[str, list[str]]) -> None:
        self.synonyms: list[tuple[str, str]] = sorted(
            ((synonym.lower(), role) for role, synonyms in lexicon.items() for synonym in [role, *synonyms]),
            key=lambda pair: -len(pair[0]),
        )

    def normalise(self, phrase: str) -> str | None:
        """The lexicon role named at the end of a phrase's first words ("phd student" -> student)."""
        words = PHRASE_END.split(phrase, maxsplit=1)[0].split()[:4]
        head = " ".join(words)
        for synonym, role in self.synonyms:
            if re.search(r"(?:^|\s)" + re.escape(synonym) + r"$", head) or head == synonym:
                return role
        return None

    def __call__(self, event: EventView) -> list[Finding]:
        if not is_authored_message(event):
            return []
        text = clean(event.text)
        if text.is_command:
            return []
        prose = normalise_phrase(text.prose)
        findings = {}
        for pattern, weight in DECLARATIONS:
            for match in pattern.finditer(prose):
                if re.search(r"\bnot\s*$", prose[: match.start(1)]):
                    continue
                role = self.normalise(match.group(1))
                if role and weight > findings.get(role, 0):
                    findings[role] = weight
        return [Finding("role", role, weight) for role, weight in findings.items()]
