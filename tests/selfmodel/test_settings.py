"""Config loading: the minimal config is complete, overrides apply, and every bad config names its problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfmodel.settings import ConfigError, load_settings

MINIMAL = """
warehouse: {path: .selfmodel/warehouse.duckdb}
sources:
  - {name: qc, format: stackexchange, path: data/stackexchange-quantumcomputing}
"""


def write(tmp_path: Path, text: str, name: str = "selfmodel.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_is_complete_and_paths_resolve_against_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    settings = load_settings(write(folder, MINIMAL), environ={})
    assert settings.warehouse_path == folder / ".selfmodel" / "warehouse.duckdb"
    assert settings.resolve(settings.sources[0].path) == folder / "data" / "stackexchange-quantumcomputing"
    assert settings.ingest.max_clock_skew_seconds == 300
    assert settings.ingest.kinds == ["message", "response", "feedback"]


def test_config_path_comes_from_the_environment_when_not_given(tmp_path: Path, monkeypatch) -> None:
    other = write(tmp_path, MINIMAL, "other.yaml")
    monkeypatch.setenv("SELFMODEL_CONFIG", str(other))
    assert load_settings().base_dir == tmp_path


def test_environment_overrides_single_values(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), environ={
        "SELFMODEL__WAREHOUSE__PATH": "/srv/wh.duckdb",
        "SELFMODEL__INGEST__MAX_CLOCK_SKEW_SECONDS": "60",
    })
    assert settings.warehouse_path == Path("/srv/wh.duckdb")
    assert settings.ingest.max_clock_skew_seconds == 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL.replace("stackexchange,", "xml,"), "sources.0.format"),
        (MINIMAL.replace("warehouse:", "warehous:"), "warehous: unknown setting"),
        (MINIMAL + "  - {name: qc, format: jsonl, path: x.jsonl}\n", "source names must be unique"),
        (MINIMAL.replace("{name: qc,", "{name: 'q c',"), "sources.0.name"),
        (MINIMAL + "ingest: {max_record_bytes: -1}\n", "ingest.max_record_bytes"),
        (MINIMAL.replace("path: data/", "mapping: {author: x}, path: data/"), "unknown canonical field"),
        (MINIMAL.replace("path: data/", "timestamps: {timezone: Mars/Base}, path: data/"), "sources.0.timestamps.timezone"),
        ("sources: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "mapping at the top level"),
    ],
)
def test_bad_config_names_the_field_and_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text), environ={})
    assert expected in str(raised.value)


def test_missing_config_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config PATH or set SELFMODEL_CONFIG"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_unknown_source_name_lists_the_known_ones(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), environ={})
    with pytest.raises(ConfigError, match="known: qc"):
        settings.source("nope")


def test_the_committed_configs_load() -> None:
    from tests.conftest import REPO_ROOT

    for name in ("selfmodel.yaml", "selfmodel.example.yaml"):
        settings = load_settings(REPO_ROOT / name, environ={})
        assert settings.sources[0].name == "qc"
