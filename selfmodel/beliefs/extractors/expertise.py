"""expertise: novice / intermediate / expert, overall (key `expertise`) and per topic (`expertise@<tag>`).

Evidence: what people say about themselves ("I'm new to ...", "I've worked on ... for years"),
answering (someone who answers knows something), and feedback others give their answers (accepted
or upvoted: expert; downvoted: novice). Asking a question is not evidence: experts ask too.
"""

from __future__ import annotations

import re

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import clean, normalise_phrase

NAME, VERSION = "expertise", "1"

SELF_DECLARATIONS = [
    ("novice", 1.0, re.compile(
        r"\b(?:i am (?:very |really |quite |completely |totally )?new to|i am (?:a )?(?:complete |total )?"
        r"(?:beginner|newbie|novice|layman|noob)|i am not an? (?:expert|specialist|professional)"
        r"|i (?:just|recently) started (?:learning|studying|with)|i do not know (?:much|anything) about"
        r"|i have no (?:idea|background|experience)|as an? (?:beginner|newbie|novice|layman|outsider))\b")),
    ("intermediate", 0.7, re.compile(
        r"\b(?:i have some (?:experience|background|knowledge)|i know the basics|i am (?:somewhat|fairly) "
        r"familiar with|i have (?:taken|done) (?:a|an|some) (?:course|courses|class))\b")),
    ("expert", 1.0, re.compile(
        r"\b(?:i have (?:been )?(?:worked|working|researched|researching|studied|studying) (?:on|in|with)? ?"
        r"[\w -]{0,40}? for (?:many |several |\d+ |a few )?(?:years|decades)|i have \d+ years (?:of )?experience"
        r"|my (?:research|thesis|phd|dissertation) (?:is|was) (?:on|about)|i (?:wrote|authored) (?:a|the|several) "
        r"(?:paper|papers|book)|i am an? (?:expert|professor|specialist) (?:in|on)|i did my phd)\b")),
]

# Feedback received on an answer: vote type -> (level, weight). Ratings without a vote type fall back
# to the sign of the rating.
VOTE_EVIDENCE = {"accept": ("expert", 1.0), "upvote": ("expert", 0.3), "bounty_close": ("expert", 0.5),
                 "downvote": ("novice", 0.3)}


def _with_topics(level: str, weight: float, tags: tuple[str, ...], user_id: str | None = None) -> list[Finding]:
    findings = [Finding("expertise", level, weight, user_id)]
    findings += [Finding(f"expertise@{tag.lower()}", level, weight, user_id) for tag in dict.fromkeys(tags)]
    return findings


def _is_answer(attributes: dict) -> bool:
    return attributes.get("post_type") == "answer"


class ExpertiseExtractor:
    name, version = NAME, VERSION

    def __call__(self, event: EventView) -> list[Finding]:
        findings: list[Finding] = []
        if is_authored_message(event):
            text = clean(event.text)
            if not text.is_command:
                prose = normalise_phrase(text.prose)
                for level, weight, pattern in SELF_DECLARATIONS:
                    if pattern.search(prose):
                        findings += _with_topics(level, weight, event.tags)
                        break  # the first (most specific) declaration of a message is the one
            if _is_answer(event.attributes):
                findings += _with_topics("intermediate", 0.3, event.tags)
        elif event.kind == "feedback" and event.target is not None and _is_answer(event.target.attributes):
            target = event.target
            if target.user_id == event.user_id:
                return findings  # nobody's vote on their own answer counts
            vote = event.attributes.get("vote_type")
            evidence = VOTE_EVIDENCE.get(vote)
            if evidence is None and vote is None and event.rating is not None and event.rating != 0:
                evidence = ("expert", 0.3) if event.rating > 0 else ("novice", 0.3)
            if evidence is not None:
                findings += _with_topics(evidence[0], evidence[1], target.tags, user_id=target.user_id)
        return findings
