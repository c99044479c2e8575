"""language: the language of the user's own words, or nothing when the text is too short or unclear."""

from __future__ import annotations

import pytest

from selfmodel.beliefs.extractors.language import LanguageExtractor, detect
from tests.selfmodel.beliefs.extractors.events import feedback, message, response

extract = LanguageExtractor()


def language(text: str) -> str | None:
    findings = extract(message(text))
    assert len(findings) <= 1
    if not findings:
        return None
    [finding] = findings
    assert finding.key == "language" and finding.user_id is None
    assert 0.8 <= finding.weight <= 1.0  # the detector's probability
    return finding.value


@pytest.mark.parametrize("text, code", [
    ("I have two dogs and I live in Berlin.", "en"),
    ("Hola, ¿cómo estás? Tengo dos perros y me gusta correr.", "es"),
    ("Ich habe zwei Hunde und wohne in Berlin.", "de"),
    ("Привет, я живу в Москве и люблю читать книги.", "ru"),
    ("我喜欢在周末和朋友一起去爬山。", "zh"),
    ("你好，我是学生", "zh"),
    ("私は学生です。犬が好きです。", "ja"),
    ("저는 학생이고 개를 좋아해요", "ko"),
])
def test_languages(text, code):
    assert language(text) == code


@pytest.mark.parametrize("text", [
    "ok", "lol", "hola amigo", "ok ok ok", "你好", "/start Hola, ¿cómo estás? Tengo dos perros.", "",
    "```\nprint('Hola, ¿cómo estás? Tengo dos perros y me gusta correr.')\n```",
    "$$\\sum_i \\alpha_i |i\\rangle$$", "https://example.com/es/tengo-dos-perros-y-me-gusta-correr",
])
def test_short_unclear_or_non_prose_text_gives_no_guess(text):
    assert language(text) is None


def test_code_and_math_do_not_sway_the_language():
    text = ("Ich habe zwei Hunde und wohne in Berlin.\n```\nfor dog in dogs:\n    print('the quick brown fox')\n```\n"
            "$\\langle\\psi|\\phi\\rangle$")
    assert language(text) == "de"


def test_html_remnants_are_not_words():
    assert language("<p>Ich habe zwei Hunde und wohne in <b>Berlin</b>.</p>") == "de"


def test_the_probability_is_the_weight():
    [finding] = extract(message("Ich habe zwei Hunde und wohne in Berlin."))
    assert finding.weight == pytest.approx(detect("Ich habe zwei Hunde und wohne in Berlin.")[1])


def test_only_the_users_own_messages():
    assert extract(response("Ich habe zwei Hunde und wohne in Berlin.")) == []
    assert extract(feedback(None, 1.0)) == []
