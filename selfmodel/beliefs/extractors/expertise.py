"""expertise: novice / intermediate / expert, overall (key `expertise`) and per topic (`expertise@<tag>`).

Evidence: what people say about themselves ("I'm new to ...", "I've worked on ... for years"),
answering (someone who answers knows something), and feedback others give their answers (accepted
or upvoted: expert; downvoted: novice), credited to the answer's author, never to the voter, and not
at all when someone rates their own answer. Asking a question is not evidence: experts ask too.
Self-declarations are read in the author's own voice only (text.own_statements: no quotes,
questions, hypotheticals or sarcasm).
"""

from __future__ import annotations

import re

from selfmodel.beliefs.extractors.base import EventView, Finding, is_authored_message
from selfmodel.beliefs.extractors.text import own_statements
from selfmodel.beliefs.extractors.topic import normalised_tags

NAME, VERSION = "expertise", "2"

# Being new to a site is not being new to a subject.
NOT_A_SUBJECT = r"(?!(?:this |the )?(?:site|forum|community|stack ?exchange|se|stack overflow|here)\b)"
# (level, weight, pattern), most specific first; the first that matches a message is the one.
# "I have no idea why ..." is about one thing, not a level, so it is not here.
SELF_DECLARATIONS = [
    ("novice", 1.0, re.compile(
        r"\b(?:i am (?:very |really |quite |completely |totally |fairly |relatively |pretty )?new to " + NOT_A_SUBJECT +
        r"|i am (?:a )?(?:complete |total |absolute )?(?:beginner|newbie|novice|layman|noob)"
        r"|i (?:just|recently) started (?:learning|studying)|i have no (?:background|knowledge) (?:in|of)"
        r"|as an? (?:beginner|newbie|novice|layman|outsider)\b(?!,? (?:you|one|someone|people)\b))")),
    ("novice", 0.5, re.compile(
        r"\b(?:i am not an? (?:expert|specialist|professional)|i do not know (?:much|anything) about"
        r"|i have no experience (?:in|with|of))\b")),
    ("intermediate", 0.7, re.compile(
        r"\b(?:i have some (?:experience|background|knowledge)|i know the basics|i am (?:somewhat|fairly) "
        r"familiar with|i have (?:taken|done) (?:a|an|some) (?:course|courses|class))\b")),
    ("expert", 1.0, re.compile(
        r"\b(?:i have (?:been )?(?:worked|working|researched|researching|studied|studying) (?:on|in|with)? ?"
        r"[\w -]{0,40}? for (?:many |several |\d+ |a few )?(?:years|decades)|i have \d+ years (?:of )?experience"
        r"|my (?:research|thesis|phd|dissertation) (?:is|was) (?:on|about)|i (?:wrote|authored) (?:a|the|several) "
        r"(?:paper|papers|book)|i am an? (?:expert|professor|specialist) (?:in|on)|i did my phd)\b")),
]

# Each self-declaration above needs one of these: a statement without any declares no level.
DECLARATION_HINT = re.compile(r"\b(?:i (?:am|just|recently|have|do not know|know the basics|wrote|authored|did my phd)"
                              r"|as an? |my (?:research|thesis|phd|dissertation))")

# Feedback received on an answer: vote type -> (level, weight). Ratings without a vote type fall back
# to the sign of the rating.
VOTE_EVIDENCE = {"accept": ("expert", 1.0), "upvote": ("expert", 0.3), "bounty_close": ("expert", 0.5),
                 "downvote": ("novice", 0.3)}


def _with_topics(level: str, weight: float, tags: tuple[str, ...], kind: str, user_id: str | None = None
                 ) -> list[Finding]:
    findings = [Finding("expertise", level, weight, user_id, kind)]
    findings += [Finding(f"expertise@{tag}", level, weight, user_id, kind) for tag in normalised_tags(tags)]
    return findings


def _is_answer(attributes: dict) -> bool:
    return attributes.get("post_type") == "answer"


def self_declared(text: str | None) -> tuple[str, float] | None:
    """(level, weight) the author declares in a message, if any."""
    statements = [statement for statement in own_statements(text, opinions=True) if DECLARATION_HINT.search(statement)]
    for level, weight, pattern in SELF_DECLARATIONS:
        if any(pattern.search(statement) for statement in statements):
            return level, weight
    return None


class ExpertiseExtractor:
    name, version = NAME, VERSION
    content_only = True  # without a target, its findings read no ids and no time (observe.observations_of_page)

    def __call__(self, event: EventView) -> list[Finding]:
        findings: list[Finding] = []
        if is_authored_message(event):
            declared = self_declared(event.text)
            if declared is not None:
                findings += _with_topics(*declared, event.tags, kind="declared")
            if _is_answer(event.attributes):
                findings += _with_topics("intermediate", 0.3, event.tags, kind="answered")
        elif event.kind == "feedback" and event.target is not None and _is_answer(event.target.attributes):
            target = event.target
            if target.user_id == event.user_id:
                return findings  # nobody's vote on their own answer counts
            vote = event.attributes.get("vote_type")
            evidence, kind = VOTE_EVIDENCE.get(vote), vote
            if evidence is None and vote is None and event.rating is not None and event.rating != 0:
                evidence, kind = ("expert", 0.3) if event.rating > 0 else ("novice", 0.3), "rating"
            if evidence is not None:
                findings += _with_topics(evidence[0], evidence[1], target.tags, kind, user_id=target.user_id)
        return findings
