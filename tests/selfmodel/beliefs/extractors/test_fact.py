"""fact: short first-person statements, and only those said in earnest."""

from __future__ import annotations

import pytest

from selfmodel.beliefs.extractors.fact import FactExtractor
from tests.selfmodel.beliefs.extractors.events import feedback, found, message, response

extract = FactExtractor()


def facts(text: str) -> list[str]:
    findings = extract(message(text))
    assert all(f.key == "fact" and f.weight == 1.0 and f.user_id is None for f in findings)
    return [f.value for f in findings]


@pytest.mark.parametrize("text, expected", [
    ("i have two dogs", ["i have two dogs"]),
    ("I've got a cat.", ["i have a cat"]),
    ("Yes I have a dog too", ["i have a dog"]),
    ("My favorite band is Queen!", ["my favorite band is queen"]),
    ("my favourite food is pizza", ["my favourite food is pizza"]),
    ("I'm from Spain", ["i am from spain"]),
    ("I live in a small town in Ohio.", ["i live in a small town in ohio"]),
    ("I work at a hospital", ["i work at a hospital"]),
    ("I'm 25 years old", ["i am 25 years old"]),
    ("I am a vegan", ["i am a vegan"]),
    ("i really like hiking", ["i like hiking"]),
    ("I play the guitar", ["i play the guitar"]),
    ("My father is a farmer", ["my father is a farmer"]),
    ("My pet's name is Charlie", ["my pet's name is charlie"]),
    ("I do not like clowns", ["i do not like clowns"]),
    ("hey i am a bee farmer", ["i am a bee farmer"]),
])
def test_plain_self_disclosures(text, expected):
    assert facts(text) == expected


def test_a_compound_sentence_holds_two_facts():
    assert facts("i am a nurse and i have two dogs") == ["i am a nurse", "i have two dogs"]
    assert facts("I'm a teacher, my husband is a chef; I love jazz.") == [
        "i am a teacher", "i love jazz", "my husband is a chef"]


def test_a_fact_ends_at_its_first_comma_or_subordinate_clause():
    assert facts("I have a son, he is 16 years old") == ["i have a son"]
    assert facts("I like crocheting but not knitting") == ["i like crocheting"]
    assert facts("i live in india and you") == ["i live in india"]
    assert facts("I used to be a painter but now I'm a housekeeper") == ["i used to be a painter"]


def test_a_long_statement_is_dropped_not_clipped():
    assert facts("I like to have a long hike with my whole family in the mountains every summer") == []


@pytest.mark.parametrize("text", [
    "i have edited the post",  # present perfect: what was done, not what is
    "I have finished my homework",
    "i have tried everything",
    "I've fallen over",
    "I have quit the job",
    "I have had a brief skim through the papers",
    "I have probably read the chapter",
    "I have to go",
    "I have no idea",
    "i have a question about $H|0\\rangle$",  # what a Q&A thread has
    "I have the following operation in my files",
    "My question is whether such a proof exists",
    "My understanding is that the cat is alive",
    "I like the example.",
    "I got it",
])
def test_what_is_not_a_fact_about_the_speaker(text):
    assert facts(text) == []


@pytest.mark.parametrize("text", [
    "do you have a dog?",
    "I have a dog?",
    "Do you like pizza? I mean do you",
    "if I were a teacher I would have a dog",
    "when I grow up I want to be a dog",
    "Say, I have two qubits",
    "I think I have a cold",
    "I'm not a doctor",
    "I don't have a dog",
    "I'm a genius obviously",
    "I'm a genius",
    "i have a yacht lol",
    "I'm a little sick",
    "I like your shirt",
    "I love u honey",
    "i love it",
    "I like that",
])
def test_questions_hypotheticals_negation_sarcasm_and_small_talk_say_nothing(text):
    assert facts(text) == []


@pytest.mark.parametrize("text", [
    "ok", "Hi", "lol", "/start", "/start I have two dogs", "", "   ",
    "```\nI have two dogs\n```", "see `i have two dogs`", "https://example.com/i-have-two-dogs",
    "$$ i have two dogs $$", "> I have three cats",
    'The context the person gave was: "I have three cats"',
])
def test_one_word_messages_commands_code_math_links_and_quotes_say_nothing(text):
    assert facts(text) == []


def test_html_remnants_are_read_through():
    assert facts("<p>I&#39;m from <b>Spain</b></p>") == ["i am from spain"]


def test_quoted_lines_are_skipped_but_the_authors_own_are_kept():
    assert facts("> I have three cats\nI have a dog") == ["i have a dog"]


def test_a_bot_loop_gives_the_fact_once():
    assert facts("i love coffee . i love coffee .i love coffee . i love coffee .") == ["i love coffee"]


@pytest.mark.parametrize("text", ["Tengo dos perros", "Ich habe zwei Hunde", "У меня две собаки", "我有两只狗"])
def test_other_languages_give_no_english_facts(text):
    assert facts(text) == []


def test_only_messages_the_user_wrote_count():
    assert extract(response("i have two dogs")) == []
    assert extract(feedback(None, 1.0)) == []


def test_findings_are_exact():
    assert found(extract(message("I'm a nurse and I have two dogs. I have two dogs!"))) == [
        ("fact", "i am a nurse", 1.0, None), ("fact", "i have two dogs", 1.0, None)]
