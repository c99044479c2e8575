"""Extractors by name. Each is a pure callable EventView -> [Finding] with a `name` and `version`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from selfmodel.beliefs.extractors.expertise import ExpertiseExtractor
from selfmodel.beliefs.extractors.fact import FactExtractor
from selfmodel.beliefs.extractors.language import LanguageExtractor
from selfmodel.beliefs.extractors.role import RoleExtractor
from selfmodel.beliefs.extractors.style import StyleExtractor
from selfmodel.beliefs.extractors.topic import TopicExtractor

EXTRACTOR_NAMES = ("topic", "expertise", "role", "style", "language", "fact")


def load_yaml_mapping(path: Path | None, packaged: str) -> dict[str, list[str]]:
    """A {name: [phrases]} file: the user's when configured, else the packaged default."""
    if path is None:
        text = resources.files("selfmodel.beliefs").joinpath("data", packaged).read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    loaded = yaml.safe_load(text) or {}
    if not isinstance(loaded, dict) or not all(isinstance(v, list) for v in loaded.values()):
        raise ValueError(f"{path or packaged} must map each name to a list of phrases")
    return {str(name): [str(phrase) for phrase in phrases] for name, phrases in loaded.items()}


def build_extractors(enabled: list[str], taxonomy_path: Path | None = None, roles_path: Path | None = None) -> list:
    """The enabled extractors, constructed with their resources."""
    factories = {
        "topic": lambda: TopicExtractor(load_yaml_mapping(taxonomy_path, "topics.yaml")),
        "expertise": ExpertiseExtractor,
        "role": lambda: RoleExtractor(load_yaml_mapping(roles_path, "roles.yaml")),
        "style": StyleExtractor,
        "language": LanguageExtractor,
        "fact": FactExtractor,
    }
    return [factories[name]() for name in EXTRACTOR_NAMES if name in enabled]
