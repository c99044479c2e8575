"""expertise: self-declarations, answering, and feedback credited to the answer's author."""

from __future__ import annotations

import pytest

from selfmodel.beliefs.extractors.base import TargetView
from selfmodel.beliefs.extractors.expertise import ExpertiseExtractor
from tests.selfmodel.beliefs.extractors.events import feedback, found, message, response

extract = ExpertiseExtractor()
TAGS = ("qubit", "Grover")


def answer_by(author: str) -> TargetView:
    return TargetView(user_id=author, kind="message", text="Use amplitude amplification.", tags=TAGS,
                      attributes={"post_type": "answer"})


def expertise(level: str, weight: float, user_id: str | None = None, tags: tuple[str, ...] = TAGS) -> list[tuple]:
    """The findings for one piece of evidence: overall, and per topic."""
    keys = ["expertise", *(f"expertise@{tag.lower()}" for tag in tags)]
    return sorted((key, level, weight, user_id) for key in keys)


@pytest.mark.parametrize("text, level, weight", [
    ("I'm new to quantum computing, sorry.", "novice", 1.0),
    ("I am a complete beginner here", "novice", 1.0),
    ("I just started learning Q#", "novice", 1.0),
    ("As a beginner, I find this hard", "novice", 1.0),
    ("I'm not an expert, but I think it works", "novice", 0.5),
    ("I don't know much about physics", "novice", 0.5),
    ("I have some background in software engineering", "intermediate", 0.7),
    ("I've worked on superconducting qubits for 10 years", "expert", 1.0),
    ("I have 15 years of experience in optics", "expert", 1.0),
    ("My thesis was on error correction", "expert", 1.0),
    ("(I wrote a paper on this)", "expert", 1.0),
])
def test_self_declarations_overall_and_per_tag(text, level, weight):
    assert found(extract(message(text, tags=TAGS))) == expertise(level, weight)


def test_without_tags_only_the_overall_level():
    assert found(extract(message("I'm new to this"))) == [("expertise", "novice", 1.0, None)]


def test_the_first_declaration_of_a_message_is_the_one():
    text = "I'm new to quantum computing. I've worked on classical compilers for years."
    assert found(extract(message(text))) == [("expertise", "novice", 1.0, None)]


@pytest.mark.parametrize("text", [
    "I'm new to Stack Exchange, hello!",  # new to the site, not the subject
    "I am new to this site",
    "I have no idea why the sign flips",  # about one thing, not a level
    "Are you new to Q#?",
    "As a beginner, you should start with Nielsen & Chuang",
    "If I were an expert in optics I would know",
    "I'm an expert in optics obviously",
    "> I'm a complete beginner",
    'She wrote "I am new to quantum computing"',
    "I'm not new to quantum computing",
    "/start I'm new to this",
    "ok",
    "Soy nuevo en computación cuántica",
])
def test_what_declares_no_level(text):
    assert extract(message(text, tags=TAGS)) == []


def test_answering_is_some_evidence_and_asking_none():
    assert found(extract(message("Use a Hadamard first.", tags=TAGS, post_type="answer"))) == expertise(
        "intermediate", 0.3)
    assert extract(message("How do I apply a Hadamard?", tags=TAGS, post_type="question")) == []


def test_an_answer_with_a_declaration_counts_both():
    findings = found(extract(message("I've studied this for years. Use X.", tags=("qubit",), post_type="answer")))
    assert findings == sorted(expertise("expert", 1.0, tags=("qubit",)) + expertise("intermediate", 0.3, tags=("qubit",)))


@pytest.mark.parametrize("vote, rating, level, weight", [
    ("accept", 1.0, "expert", 1.0),
    ("upvote", 1.0, "expert", 0.3),
    ("bounty_close", 1.0, "expert", 0.5),
    ("downvote", -1.0, "novice", 0.3),
])
def test_feedback_on_an_answer_goes_to_its_author_not_the_voter(vote, rating, level, weight):
    event = feedback(answer_by("author"), rating, user_id="voter", vote_type=vote)
    assert found(extract(event)) == expertise(level, weight, user_id="author")


@pytest.mark.parametrize("vote", ["accept", "upvote", "downvote"])
def test_a_vote_on_ones_own_answer_is_ignored(vote):
    assert extract(feedback(answer_by("author"), 1.0, user_id="author", vote_type=vote)) == []


def test_anonymous_upvotes_count_for_the_author():
    event = feedback(answer_by("author"), 1.0, user_id="anonymous", vote_type="upvote")
    assert found(extract(event)) == expertise("expert", 0.3, user_id="author")


@pytest.mark.parametrize("vote, rating", [("favorite", 1.0), ("close", None), ("spam", -1.0)])
def test_other_vote_types_say_nothing_about_expertise(vote, rating):
    assert extract(feedback(answer_by("author"), rating, user_id="voter", vote_type=vote)) == []


@pytest.mark.parametrize("rating, expected", [
    (1.0, [("expertise", "expert", 0.3, "author")]),
    (-2.0, [("expertise", "novice", 0.3, "author")]),
    (0.0, []),
    (None, []),
])
def test_a_rating_without_a_vote_type_falls_back_to_its_sign(rating, expected):
    target = TargetView(user_id="author", kind="message", text="x", attributes={"post_type": "answer"})
    assert found(extract(feedback(target, rating, user_id="voter"))) == expected


def test_feedback_on_anything_but_an_answer_is_no_expertise_evidence():
    question = TargetView(user_id="author", kind="message", text="How?", tags=TAGS, attributes={"post_type": "question"})
    bot_turn = TargetView(user_id="u1", kind="response", text="I am a bot.")
    assert extract(feedback(question, 1.0, user_id="voter", vote_type="upvote")) == []
    assert extract(feedback(bot_turn, 1.0)) == []
    assert extract(feedback(None, 1.0)) == []


def test_responses_are_not_the_users_words():
    assert extract(response("I've worked on qubits for years")) == []
