"""The LLM extractor's grounding check: what a model says about a message is kept only when it rests on the
user's own words (as sent, after PII redaction)."""

from __future__ import annotations

import pytest

from selfmodel.llm.extract import PROMPT_VERSION, SYSTEM_PROMPT, UserProfile, ground, messages_for

MESSAGE = "Hi! I'm a registered nurse and I have two dogs. New to dbt, keep it short please; bullet points help."


def profile(**fields) -> UserProfile:
    return UserProfile(**{"role": None, "expertise": [], "facts": [], "verbosity": None, "formats": [], **fields})


def lookup(phrase: str) -> str | None:
    return "nurse" if phrase.endswith("nurse") else None


def test_grounded_items_become_findings_with_llm_evidence_kinds() -> None:
    answer = profile(
        role={"role": "registered nurse", "span": "I'm a registered nurse"},
        expertise=[{"topic": "dbt", "level": "novice", "span": "New to dbt"}],
        facts=[{"fact": "I have two dogs.", "span": "I have two dogs"}],
        verbosity={"verbosity": "concise", "span": "keep it short"},
        formats=[{"format": "lists", "span": "bullet points help"}],
    )
    grounded = ground(answer, MESSAGE, lookup)
    assert grounded.dropped == 0
    assert [(f.key, f.value, f.kind) for f in (item.finding() for item in grounded.items)] == [
        ("role", "nurse", "role"),  # the role lexicon's name, as the rule extractor gives it
        ("expertise@dbt", "novice", "expertise"),
        ("fact", "i have two dogs", "fact"),
        ("style.verbosity", "concise", "verbosity"),
        ("style.format", "lists", "format"),
    ]


@pytest.mark.parametrize("invented", [
    # a span the message never holds
    {"facts": [{"fact": "my phone number is 555 0100", "span": "call me at 555 0100"}]},
    {"facts": [{"fact": "i live in berlin", "span": "I just moved to Berlin"}]},
    # a true span under a value it does not say
    {"facts": [{"fact": "i live in berlin", "span": "I have two dogs"}]},
    {"facts": [{"fact": "i have 3 dogs", "span": "I have two dogs"}]},
    {"role": {"role": "surgeon", "span": "I'm a registered nurse"}},
    {"expertise": [{"topic": "rust", "level": "expert", "span": "New to dbt"}]},
    # a span too short to rest anything on, and placeholders of redacted PII
    {"verbosity": {"verbosity": "detailed", "span": "I"}},
    {"facts": [{"fact": "my email is [email]", "span": "[email]"}]},
    {"facts": [{"fact": "my email is ana@example.org", "span": "I have two dogs"}]},
])
def test_an_item_not_grounded_in_the_message_is_dropped_and_counted(invented: dict) -> None:
    grounded = ground(profile(**invented), MESSAGE, lookup)
    assert grounded.items == [] and grounded.dropped == 1


def test_spans_match_without_case_and_extra_spaces_and_duplicates_count_once() -> None:
    answer = profile(facts=[{"fact": "i have two dogs", "span": "i  HAVE two dogs."},
                            {"fact": "I have two dogs", "span": "I have two dogs"}])
    grounded = ground(answer, MESSAGE)
    assert [item.value for item in grounded.items] == ["i have two dogs"] and grounded.dropped == 0


def test_a_role_the_lexicon_does_not_know_stays_as_said_and_a_long_one_is_dropped() -> None:
    message = "As a platform engineer at a bank I ..."
    kept = ground(profile(role={"role": "Platform Engineer", "span": "a platform engineer"}), message)
    assert [item.value for item in kept.items] == ["platform engineer"]
    long_role = profile(role={"role": "platform engineer at a bank", "span": "platform engineer at a bank"})
    assert ground(long_role, message).dropped == 1  # more than four words: not a role name


def test_what_is_sent_is_redacted_and_cut_and_carries_the_prompt() -> None:
    messages, sent = messages_for("mail me at ana@example.org or call +49 30 1234567. " + "x" * 100, 60)
    assert sent == "mail me at [email] or call [phone]. " + "x" * 24
    assert messages_for("my number: +49 30 1234567", 16)[1] == "my number: [phon"  # redacted before it is cut
    assert messages == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": sent}]
    assert PROMPT_VERSION.startswith("1-")
