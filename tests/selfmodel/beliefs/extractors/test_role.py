"""role: self-declared roles, normalised through the lexicon, and nothing the lexicon does not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfmodel.beliefs.extractors import build_extractors, load_yaml_mapping
from selfmodel.beliefs.extractors.role import RoleExtractor
from tests.selfmodel.beliefs.extractors.events import feedback, found, message, response

extract = RoleExtractor(load_yaml_mapping(None, "roles.yaml"))


def roles(text: str) -> list[tuple]:
    return found(extract(message(text)))


@pytest.mark.parametrize("text, role", [
    ("I'm a nurse", "nurse"),
    ("im a nurse", "nurse"),
    ("I am a PhD student in physics", "student"),
    ("I'm a physics student", "student"),
    ("I am a poor python programmer", "software engineer"),
    ("I work as a software developer", "software engineer"),
    ("I'm working as nurse", "nurse"),
    ("My job is a teacher", "teacher"),
    ("I am a mechanical engineer, living in Colorado.", "engineer"),
    ("Oh what a coincidence, I'm a retired gym teacher!", "retiree"),
    ("<p>I&#39;m a <b>lawyer</b></p>", "lawyer"),
])
def test_self_declarations(text, role):
    assert roles(text) == [("role", role, 1.0, None)]


def test_as_a_counts_less_and_only_when_the_speaker_goes_on_about_themselves():
    assert roles("As a teacher, I see this every day.") == [("role", "teacher", 0.5, None)]
    assert roles("But as a physicist I find it odd") == [("role", "physicist", 0.5, None)]
    assert roles("As a result, I rewrote it.") == []
    assert roles("But as a physicist, you know this well.") == []
    assert roles("And as a teacher, one learns patience.") == []
    assert roles("A book I read as an undergraduate helped.") == []
    assert roles("Express the distribution as a combination of constraints.") == []


def test_a_plain_declaration_outweighs_an_aside():
    assert roles("I'm a doctor. As a doctor, I see this.") == [("role", "doctor", 1.0, None)]


def test_a_compound_sentence_names_the_first_role():
    assert roles("i am a nurse and i have two dogs") == [("role", "nurse", 1.0, None)]
    assert roles("I am a teacher and a musician") == [("role", "teacher", 1.0, None)]


@pytest.mark.parametrize("text", [
    "I'm not a doctor",
    "I am no longer a teacher",
    "I don't work as a teacher",
    "if I were a teacher I'd quit",
    "I wish I was a pilot",
    "Are you a doctor?",
    "am I a nurse?",
    "I'm a doctor, obviously lol",
    "I'm a genius obviously",
    "I'm a former nurse",
    "I am an aspiring writer",
    "I'm looking for work as a doctor",
])
def test_negation_hypotheticals_questions_sarcasm_and_roles_not_held(text):
    assert roles(text) == []


@pytest.mark.parametrize("text", [
    "(Full disclosure: I'm an author of this paper.)",  # an author, not an artist
    "I'm a juggler",  # not in the lexicon
    "I am a bit confused",
    'The context the person gave was: "I\'m a materials scientist."',
    "> As a programmer, I think the opposite.",
    "```\n# I am a doctor\n```",
    "/start I am a doctor",
    "doctor",
    "Soy médico y tengo dos perros",
    "Ich bin Arzt",
    "Я врач",
    "我是医生",
])
def test_what_is_not_a_role_declaration(text):
    assert roles(text) == []


def test_only_messages_the_user_wrote_count():
    assert extract(response("I'm a nurse")) == []
    assert extract(feedback(None, 1.0)) == []


def test_a_users_lexicon_replaces_the_packaged_one(tmp_path: Path):
    lexicon = tmp_path / "roles.yaml"
    lexicon.write_text("astronaut: [cosmonaut, space traveller]\n", encoding="utf-8")
    [custom] = build_extractors(["role"], roles_path=lexicon)
    assert found(custom(message("I'm a cosmonaut"))) == [("role", "astronaut", 1.0, None)]
    assert custom(message("I'm a nurse")) == []


def test_a_lexicon_that_is_not_a_mapping_of_lists_is_refused(tmp_path: Path):
    lexicon = tmp_path / "roles.yaml"
    lexicon.write_text("nurse: nurse\n", encoding="utf-8")
    with pytest.raises(ValueError, match="list of phrases"):
        load_yaml_mapping(lexicon, "roles.yaml")
