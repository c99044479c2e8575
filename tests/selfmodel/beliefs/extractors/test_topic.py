"""topic: the source's tags when it has them, else the keyword taxonomy, on whole words of prose."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfmodel.beliefs.extractors import build_extractors, load_yaml_mapping
from selfmodel.beliefs.extractors.topic import TopicExtractor
from tests.selfmodel.beliefs.extractors.events import feedback, found, message, response

extract = TopicExtractor(load_yaml_mapping(None, "topics.yaml"))


def topics(text: str, tags: tuple[str, ...] = ()) -> list[tuple]:
    return found(extract(message(text, tags=tags)))


def test_tags_are_the_topics_when_the_source_gives_them():
    assert topics("anything at all about dogs", tags=("Qubit", "grover", "qubit")) == [
        ("topic", "grover", 1.0, None), ("topic", "qubit", 1.0, None)]


def test_without_tags_the_taxonomy_names_several_topics_at_half_weight():
    assert topics("I walk my dog before band practice") == [
        ("topic", "music", 0.5, None), ("topic", "pets", 0.5, None)]
    assert topics("do you have a dog?") == [("topic", "pets", 0.5, None)]


@pytest.mark.parametrize("text", [
    "let's start",  # "art" inside "start"
    "I'm running the code on my hard drive",  # running, code, drive: not fitness, technology, cars
    "the two states match, show me the exercise",
    "it doesn't work",
    "ok",
    "/start dogs and cats",
    "```\ndog = Dog()\n```",
    "see https://dogs.example.com/cats",
    "<img src='dog.png'>",
    "$dog + cat$",
    "Tengo dos perros",
])
def test_what_names_no_topic(text):
    assert topics(text) == []


def test_only_messages_the_user_wrote():
    assert extract(response("I love my dog")) == []
    assert extract(feedback(None, 1.0)) == []


def test_a_users_taxonomy_replaces_the_packaged_one(tmp_path: Path):
    taxonomy = tmp_path / "topics.yaml"
    taxonomy.write_text("birds: [parrot]\nlanguages: [c++, q#]\nempty: []\n", encoding="utf-8")
    [custom] = build_extractors(["topic"], taxonomy_path=taxonomy)
    assert found(custom(message("my parrot talks"))) == [("topic", "birds", 0.5, None)]
    assert found(custom(message("I write C++ and Q#, no parrots"))) == [("topic", "languages", 0.5, None)]
    assert custom(message("my dog barks, a c+ grade")) == []


def test_every_packaged_extractor_builds_and_has_a_name_and_version():
    names = ["topic", "expertise", "role", "style", "language", "fact"]
    extractors = build_extractors(names)
    assert [x.name for x in extractors] == names
    assert all(isinstance(x.version, str) and x.version for x in extractors)
