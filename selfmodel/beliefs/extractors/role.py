"""role: what the user says they are ("I'm a nurse", "as a developer, I ...", "I work as a teacher"),
normalised through an editable lexicon. Phrases the lexicon does not know give no evidence: a wrong
role is worse than none. Only the author's own statements count (text.own_statements: no quotes,
questions, hypotheticals or sarcasm); "former", "aspiring" and the like name a role they do not hold.
"""

from __future__ import annotations

import re

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import own_statements

NAME, VERSION = "role", "2"

ROLE = r"([a-z][a-z' -]{1,60}?)"
# (pattern, weight). "as a ..." counts only when the speaker goes on about themselves ("as a teacher,
# i ..."), not "as a result" or "a book i read as an undergraduate"; and less, since it is an aside.
DECLARATIONS = [
    (re.compile(r"\bi (?:work|am working|have worked) as (?:a |an )?([a-z][a-z' -]{1,60})"), 1.0),
    (re.compile(r"\bi am (?:a |an )([a-z][a-z' -]{1,60})"), 1.0),
    (re.compile(r"\bmy (?:job|profession|occupation) is (?:a |an )?([a-z][a-z' -]{1,60})"), 1.0),
    (re.compile(r"(?:^|[,;:] |\b(?:but|and|so|well) )as an? " + ROLE + r",? (?:i|my|myself|me)\b"), 0.5),
]
# Each declaration needs one of these: a statement without any declares no role.
DECLARATION_HINT = re.compile(r"\bi (?:work|am|have worked)|\bmy (?:job|profession|occupation) is|as an? ")
PHRASE_END = re.compile(r"\b(?:and|or|but|who|which|that|so|because|in|at|from|with|for|of|on|to|by|i|my)\b"
                        r"|[,.;:!?()]")
NOT_HELD = re.compile(r"\b(?:former|ex|future|aspiring|wannabe|would-be|prospective|retired|fake|pretend)\b")


class RoleExtractor:
    name, version = NAME, VERSION
    content_only = True  # without a target, its findings read no ids and no time (observe.observations_of_page)

    def __init__(self, lexicon: dict[str, list[str]]) -> None:
        self.looked_up: dict[str, str | None] = {}
        self.synonyms: list[tuple[str, str]] = sorted(
            ((synonym.lower(), role) for role, synonyms in lexicon.items() for synonym in [role, *synonyms]),
            key=lambda pair: -len(pair[0]),
        )

    def lookup(self, head: str) -> str | None:
        if head in self.looked_up:
            return self.looked_up[head]
        found = next((role for synonym, role in self.synonyms if head == synonym or head.endswith(" " + synonym)), None)
        if len(self.looked_up) < 65536:
            self.looked_up[head] = found
        return found

    def normalise(self, phrase: str) -> str | None:
        """The lexicon role named at the end of a phrase's first words ("phd student" -> student); a
        retired one is a retiree (when the lexicon has one), a former or aspiring one is none."""
        words = PHRASE_END.split(phrase, maxsplit=1)[0].split()[:4]
        head = " ".join(words)
        if NOT_HELD.search(head):
            return self.lookup("retiree") if re.search(r"\bretired\b", head) and self.lookup(head) else None
        return self.lookup(head)

    def __call__(self, event: EventView) -> list[Finding]:
        if not is_authored_message(event):
            return []
        findings: dict[str, float] = {}
        for statement in own_statements(event.text, opinions=True):
            if not DECLARATION_HINT.search(statement):
                continue
            for pattern, weight in DECLARATIONS:
                for match in pattern.finditer(statement):
                    if re.search(r"\b(?:not|never|no longer)\s*$", statement[: match.start(1)]):
                        continue
                    role = self.normalise(match.group(1))
                    if role and weight > findings.get(role, 0):
                        findings[role] = weight
        return [Finding("role", role, weight, kind="declared") for role, weight in sorted(findings.items())]
