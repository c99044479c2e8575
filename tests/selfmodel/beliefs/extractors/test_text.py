"""text: what is left of a message for the extractors to read, and what was taken out."""

from __future__ import annotations

import pytest

from selfmodel.beliefs.extractors.text import clean, normalise_phrase, own_statements, sentences, word_count


def test_fenced_code_is_removed_and_noted():
    text = clean("Try this:\n```python\nprint('i have two dogs')\n```\nthen run it")
    assert text.prose == "Try this:\n \nthen run it"
    assert text.has_code and not text.has_math
    assert text.words == 5


def test_an_unclosed_fence_swallows_the_rest():
    text = clean("see\n```\nx = 1\ny = 2")
    assert text.prose == "see" and text.has_code


def test_inline_code_and_html_code_are_removed():
    assert clean("call `make_dogs()` twice").prose == "call twice"
    text = clean("<p>use <code>x &lt; y</code> here</p><pre><code>for i in dogs:\n    pass</code></pre>")
    assert text.prose == "use here"
    assert text.has_code


def test_indented_code_is_removed():
    text = clean("the loop:\n    for dog in dogs:\n        bark()\nends here")
    assert text.has_code
    assert "dog" not in text.prose and text.prose.endswith("ends here")


def test_latex_inline_and_display_math_are_removed_and_noted():
    text = clean(r"The state $|\psi\rangle = \alpha|0\rangle$ evolves as $$U = e^{-iHt}$$ and \(x^2\) too.")
    assert text.prose == "The state evolves as and too."
    assert text.has_math


def test_dollar_amounts_are_not_math():
    text = clean("it costs $5 and $10 at most")
    assert text.prose == "it costs $5 and $10 at most"
    assert not text.has_math


def test_urls_are_removed():
    assert clean("see https://example.com/a?b=c and www.dogs.org now").prose == "see and now"


def test_html_tags_and_entities_are_decoded_then_removed():
    assert clean("<p>I&#39;m a <b>nurse</b>&nbsp;&amp; a mom</p>").prose == "I'm a nurse & a mom"
    assert clean("escaped &lt;br&gt; tag").prose == "escaped tag"


def test_block_quotes_are_someone_elses_words():
    assert clean("> I am a doctor\n> and a pilot\nI am a nurse").prose == "I am a nurse"
    assert clean("<blockquote>I am a doctor</blockquote><p>I am a nurse</p>").prose == "I am a nurse"


@pytest.mark.parametrize("text, command", [
    ("/start", True), ("  /help me", True), ("/start@my_bot", True),
    ("and/or", False), ("/path/to/file is missing", False), ("hello /start", False),
])
def test_slash_commands(text, command):
    assert clean(text).is_command is command


def test_lists_need_two_items():
    assert clean("- one\n- two").has_list
    assert clean("1. one\n2) two").has_list
    assert not clean("- just one item").has_list


@pytest.mark.parametrize("text, words", [
    ("", 0), (None, 0), ("ok", 1), ("don't stop", 2), ("3 dogs", 1), ("我是学生", 4), ("我是 student", 3),
])
def test_word_count(text, words):
    assert word_count(text) == words


@pytest.mark.parametrize("text, normalised", [
    ("I'm a Nurse", "i am a nurse"), ("Im  a nurse", "i am a nurse"), ("I m a nurse", "i am a nurse"),
    ("I’ve got it", "i have got it"), ("ive got it", "i have got it"), ("I don't", "i do not"),
    ("I dont", "i do not"), ("can't", "cannot"), ("won't", "will not"), ("it isn't", "it is not"),
])
def test_normalise_phrase(text, normalised):
    assert normalise_phrase(text) == normalised


def test_sentences_split_on_stops_newlines_and_stops_without_a_space():
    assert sentences("Hi there. How are you?\nI have a dog!I like cats") == [
        "Hi there.", "How are you?", "I have a dog!", "I like cats"]


def test_sentences_keep_decimals_and_say_a_bot_loop_once():
    assert sentences("pi is 3.14 . i love coffee . i love coffee .i love coffee .") == [
        "pi is 3.14 .", "i love coffee ."]


def test_own_statements_keep_plain_statements_normalised():
    assert own_statements("I'm a nurse. I have two dogs!") == ["i am a nurse.", "i have two dogs!"]


@pytest.mark.parametrize("text", [
    "do you have a dog?",  # question
    "I have a dog?",
    "if I were a teacher I would be happy",  # hypothetical
    "I wish I had a dog",
    "Say, I have two qubits in state 0",
    "I'm a genius obviously",  # sarcasm
    "i have a yacht lol",
    "I'm a billionaire /s",
    "> I am a doctor",
    "/start I have two dogs",  # a command
    "```\nI have two dogs\n```",  # code
])
def test_own_statements_skip_what_is_not_said_in_earnest(text):
    assert own_statements(text) == []


def test_quotation_marks_hold_someone_elses_words():
    assert own_statements('She told me: "I am a materials scientist." I am a nurse') == ["she told me:", "i am a nurse"]
    assert own_statements("He said “I have a dog”") == ["he said"]


def test_opinion_hedges_are_kept_only_on_request():
    text = "As a physicist, I think this is wrong."
    assert own_statements(text) == []
    assert own_statements(text, opinions=True) == ["as a physicist, i think this is wrong."]
