"""style: how users write, and what their feedback on responses says they want back."""

from __future__ import annotations

import pytest

from selfmodel.beliefs.extractors.base import TargetView
from selfmodel.beliefs.extractors.style import StyleExtractor
from tests.selfmodel.beliefs.extractors.events import feedback, found, message, response

extract = StyleExtractor()
LONG_RESPONSE = " ".join(["The answer depends on several things you did not mention."] * 5)  # 50 words
SHORT_RESPONSE = "Yes, it does."


def bot_turn(text: str) -> TargetView:
    return TargetView(user_id="u1", kind="response", text=text)


def test_a_short_message_is_weak_evidence_for_concise():
    assert found(extract(message("i have two dogs and a cat"))) == [("style.verbosity", "concise", 0.2, None)]


@pytest.mark.parametrize("text", ["ok", "Hi", "hi there", "/start", "", "   "])
def test_one_or_two_words_and_commands_say_nothing(text):
    assert extract(message(text)) == []


def test_a_long_message_is_weak_evidence_for_detailed():
    text = " ".join(["I tried the circuit with three qubits and it failed."] * 16)  # 160 words
    assert found(extract(message(text))) == [("style.verbosity", "detailed", 0.2, None)]


def test_a_middling_message_says_nothing_about_verbosity():
    assert extract(message(" ".join(["word"] * 40))) == []


def test_code_math_and_lists_are_formats_and_are_not_counted_as_words():
    assert found(extract(message("Try this:\n```\nfor q in qubits:\n    h(q)\n```"))) == [
        ("style.format", "code", 0.5, None)]
    assert found(extract(message("I think $H^2 = I$ holds for every Hadamard gate here"))) == [
        ("style.format", "math", 0.5, None), ("style.verbosity", "concise", 0.2, None)]
    assert found(extract(message("Steps:\n- prepare the state\n- measure it twice"))) == [
        ("style.format", "lists", 0.5, None), ("style.verbosity", "concise", 0.2, None)]


def test_html_remnants_and_urls_are_not_words():
    assert extract(message("<p>see <a href='x'>https://example.com/a/b/c</a></p>")) == []


def test_thumbs_down_on_a_long_response_is_strong_evidence_for_concise():
    assert found(extract(feedback(bot_turn(LONG_RESPONSE), 0.0))) == [("style.verbosity", "concise", 1.0, None)]
    assert found(extract(feedback(bot_turn(LONG_RESPONSE), -1.0))) == [("style.verbosity", "concise", 1.0, None)]


def test_thumbs_up_on_a_long_response_is_evidence_for_detailed():
    assert found(extract(feedback(bot_turn(LONG_RESPONSE), 1.0))) == [("style.verbosity", "detailed", 0.5, None)]


def test_thumbs_down_on_a_short_response_is_evidence_for_detailed():
    assert found(extract(feedback(bot_turn(SHORT_RESPONSE), 0.0))) == [("style.verbosity", "detailed", 0.5, None)]


def test_thumbs_up_on_a_short_response_says_nothing():
    assert extract(feedback(bot_turn(SHORT_RESPONSE), 1.0)) == []


def test_code_in_a_response_does_not_make_it_long():
    code_heavy = "Here:\n```\n" + "x = 1\n" * 100 + "```"
    assert found(extract(feedback(bot_turn(code_heavy), 0.0))) == [("style.verbosity", "detailed", 0.5, None)]


def test_feedback_without_a_rating_a_target_or_on_a_users_post_says_nothing():
    assert extract(feedback(bot_turn(LONG_RESPONSE), None)) == []
    assert extract(feedback(None, 0.0)) == []
    answer = TargetView(user_id="u2", kind="message", text=LONG_RESPONSE, attributes={"post_type": "answer"})
    assert extract(feedback(answer, -1.0, user_id="anonymous", vote_type="downvote")) == []


def test_a_response_itself_is_not_the_users_style():
    assert extract(response("Sure!")) == []


def test_thumbs_up_on_a_response_with_code_or_a_list_is_evidence_for_that_format():
    with_code = "Run this:\n```\nqc.h(0)\nqc.cx(0, 1)\n```"
    assert found(extract(feedback(bot_turn(with_code), 1.0))) == [("style.format", "code", 0.5, None)]
    listed = "Do three things:\n- prepare\n- entangle\n- measure"
    assert found(extract(feedback(bot_turn(listed), 1.0))) == [("style.format", "lists", 0.5, None)]


def test_thumbs_down_on_a_response_with_code_says_nothing_about_format():
    # it may be the content they disliked; style.format holds several values, none of which it could lower
    findings = extract(feedback(bot_turn("Run this:\n```\nqc.h(0)\n```"), -1.0))
    assert [f for f in findings if f.key == "style.format"] == []
