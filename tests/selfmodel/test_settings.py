"""Config loading: the minimal config is complete, overrides apply, and every bad config names its problem."""

from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from selfmodel.beliefs.extractors import EXTRACTOR_NAMES
from selfmodel.settings import (
    DEFAULT_KEYS,
    ConfigError,
    LLM_EXTRACTOR,
    ExtractorSettings,
    Settings,
    load_settings,
)
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "selfmodel.example.yaml"

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


@pytest.mark.parametrize(("column", "problem"), [
    ("$[", "invalid JSON path '$[': JSON path error near '['"),
    ("$.meta.", "invalid JSON path '$.meta.'"),
    ("$['text']", "invalid JSON path"),
    ("$.turns[*].text", "wildcards"),
    ("$..text", "wildcards"),
    ("", "must name a column"),
    ("*", "invalid column name '*'"),  # DuckDB reads the key "*" as a wildcard (found by review)
])
def test_a_mapping_that_ingest_could_not_use_is_refused_when_the_config_loads(tmp_path: Path, column: str,
                                                                               problem: str) -> None:
    text = MINIMAL.replace("path: data/", f"mapping: {{user_id: author, text: {column!r}}}, path: data/")
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text), environ={})
    [line] = [line for line in str(raised.value).splitlines() if "sources.0.mapping" in line]
    assert line.strip().startswith("sources.0.mapping.text:") and problem in line


def test_json_paths_that_ingest_reads_load(tmp_path: Path) -> None:
    mapping = {"user_id": "$.author.id", "text": '$."message body"', "tags": "$.labels[0]", "kind": "type",
               "session_id": "$[1]", "reply_to": "$.thread[#-1]"}
    config = yaml.safe_load(MINIMAL)
    config["sources"][0]["mapping"] = mapping
    settings = load_settings(write(tmp_path, yaml.safe_dump(config)), environ={})
    assert settings.sources[0].mapping == mapping


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


# --- selfmodel.example.yaml lists every setting with its default ---------------------------------------

# A commented-out example setting: "# " at the key's own indentation, then `key:` or a list item `- `.
COMMENTED_SETTING = re.compile(r"^(\s*)# (\s*(?:- |[A-Za-z_][\w.]*:(?:\s|$)).*)$")
# Sections the example shows only commented out (they have no default), and the sources' own fields.
SHOWN_COMMENTED = ("alerts.owners", "alerts.smtp", "sources", "llm")


def uncommented(text: str) -> str:
    return "\n".join(COMMENTED_SETTING.sub(r"\1\2", line) for line in text.splitlines()) + "\n"


def _model_inside(annotation: Any, values: list[Any]) -> tuple[type[BaseModel] | None, list[Any]]:
    """The settings model inside a field's type, and the YAML values standing for it (through list, dict, | None)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, values
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list:
        return _model_inside(args[0], [item for value in values if isinstance(value, list) for item in value])
    if origin is dict:
        return _model_inside(args[1], [item for value in values if isinstance(value, dict) for item in value.values()])
    if origin in (Union, UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1:
            return _model_inside(inner[0], values)
    return None, []


def undocumented(model: type[BaseModel], nodes: list[Any], path: str = "") -> list[str]:
    """Dotted paths of the model's fields (recursively) that none of the YAML mappings in `nodes` spells out.

    Fields of models inside lists and dicts (sources, beliefs.keys, alerts.owners) count as documented when
    any entry shows them."""
    missing = []
    for name, field in model.model_fields.items():
        if name == "base_dir":  # set from the file's location, never written in it
            continue
        values = [node[name] for node in nodes if isinstance(node, dict) and name in node]
        if not values:
            missing.append(path + name)
            continue
        inner, inner_nodes = _model_inside(field.annotation, values)
        if inner is not None:
            missing += undocumented(inner, inner_nodes, f"{path}{name}.")
    return missing


def test_the_example_config_documents_every_setting_at_its_path() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert undocumented(Settings, [yaml.safe_load(uncommented(text))]) == [], \
        "selfmodel.example.yaml misses these settings (add each with its default and a comment)"
    only_in_comments = undocumented(Settings, [yaml.safe_load(text)])
    assert [path for path in only_in_comments
            if not any(path == shown or path.startswith(shown + ".") for shown in SHOWN_COMMENTED)] == [], \
        "these settings have a default, so the example shows them as real keys, not commented out"


def test_the_example_configs_commented_out_examples_are_valid(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, uncommented(EXAMPLE.read_text(encoding="utf-8"))), environ={})
    assert [source.name for source in settings.sources] == ["qc", "convai2", "app", "chats", "app_db", "app_bucket"]
    assert set(settings.alerts.owners) == {"predictive", "nightly"}
    assert settings.alerts.smtp is not None and settings.alerts.smtp.password_env


def test_the_example_config_shows_the_defaults() -> None:
    example, defaults = load_settings(EXAMPLE, environ={}), Settings()
    for section in ("warehouse", "ingest", "alerts", "eval", "snapshots", "quality", "nightly"):
        assert getattr(example, section) == getattr(defaults, section), section
    # extract_workers depends on the machine; extractors (default: none listed) are shown with the values
    # every unlisted one has, checked below.
    apart = {"extract_workers", "extractors"}
    assert example.beliefs.model_dump(exclude=apart) == defaults.beliefs.model_dump(exclude=apart)
    assert example.beliefs.keys == DEFAULT_KEYS
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["beliefs"]
    assert list(raw["keys"]) == list(DEFAULT_KEYS)  # every family shown (missing ones would be merged back in)
    assert list(raw["extractors"]) == [*EXTRACTOR_NAMES, LLM_EXTRACTOR]
    for name in EXTRACTOR_NAMES:
        assert example.beliefs.extractor(name) == defaults.beliefs.extractor(name) == ExtractorSettings()
    assert example.beliefs.extractor(LLM_EXTRACTOR) == defaults.beliefs.extractor(LLM_EXTRACTOR) \
        == ExtractorSettings(enabled=False)
    assert example.llm is None and defaults.llm is None


def test_a_url_in_any_setting_is_shown_redacted_in_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: 'http://admin:hunter2hunter2@h/x', memory_limit: 7}\n"
                      "nightly: {cron: 'https://u:hunter2hunter2@example.org/hook'}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    assert "nightly.cron" in str(raised.value) and "https://example.org/…" in str(raised.value)
    assert "hunter2hunter2" not in str(raised.value)


# --- the LLM extractor's settings ------------------------------------------------------------------------------

LLM_SECTION = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "price_per_1m_input_tokens": 0.15,
               "price_per_1m_output_tokens": 0.6}


def test_the_llm_extractor_is_off_unless_enabled_and_needs_an_endpoint(tmp_path: Path) -> None:
    assert Settings().beliefs.extractor(LLM_EXTRACTOR).enabled is False
    listed = load_settings(write(tmp_path, yaml.safe_dump({"llm": LLM_SECTION,
                                                           "beliefs": {"extractors": {"llm": {"weight": 2.0}}}})),
                           environ={})
    assert listed.beliefs.extractor(LLM_EXTRACTOR) == ExtractorSettings(enabled=False, weight=2.0)
    assert listed.beliefs.extractor("topic").enabled  # the rule extractors stay on
    with pytest.raises(ConfigError, match="beliefs.extractors.llm is enabled, so the llm section"):
        load_settings(write(tmp_path, "beliefs: {extractors: {llm: {enabled: true}}}\n"), environ={})
    with pytest.raises(ConfigError, match="unknown extractor"):
        load_settings(write(tmp_path, "beliefs: {extractors: {gpt: {enabled: true}}}\n"), environ={})


def test_the_llm_section_needs_a_model_and_prices_and_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, "llm: {base_url: 'http://localhost:8000/v1'}\n"), environ={})
    assert all(name in str(raised.value) for name in ("llm.model", "llm.price_per_1m_input_tokens",
                                                      "llm.price_per_1m_output_tokens"))
    both = {**LLM_SECTION, "api_key_secret_block": "openai-key"}
    with pytest.raises(ConfigError, match="one of api_key_env and api_key_secret_block"):
        load_settings(write(tmp_path, yaml.safe_dump({"llm": both})), environ={})
    with pytest.raises(ConfigError, match="llm.base_url"):
        load_settings(write(tmp_path, yaml.safe_dump({"llm": {**LLM_SECTION, "base_url": "localhost:8000"}})),
                      environ={})



@pytest.mark.parametrize("base_url", ["http://user:pw-planted@[::1/v1", "http://127.0.0.1:99999/v1", "http://:80/v1"])
def test_an_llm_base_url_the_client_could_not_use_is_a_config_error_that_quotes_no_credential(
        tmp_path: Path, base_url: str) -> None:
    with pytest.raises(ConfigError, match="llm.base_url: .*must be an http:// or https:// URL") as raised:
        load_settings(write(tmp_path, yaml.safe_dump({"llm": {**LLM_SECTION, "base_url": base_url}})), environ={})
    assert "pw-planted" not in str(raised.value)

def test_the_llm_key_is_read_when_used_and_never_quoted(tmp_path: Path) -> None:
    key = "sk-planted-0123456789abcdef"
    settings = load_settings(write(tmp_path, yaml.safe_dump({"llm": {**LLM_SECTION, "api_key_env": "MY_LLM_KEY"}})),
                             environ={"MY_LLM_KEY": key})
    assert key not in settings.model_dump_json()  # only the variable's name is in the settings
    assert settings.llm.api_key({"MY_LLM_KEY": key}) == key
    with pytest.raises(ConfigError, match="MY_LLM_KEY.*not set") as raised:
        settings.llm.api_key({})
    assert "127.0.0.1" in str(raised.value)
    keyless = load_settings(write(tmp_path, yaml.safe_dump({"llm": {**LLM_SECTION, "api_key_env": None}})), environ={})
    assert keyless.llm.api_key({}) is None  # a local server that needs no key
    # A key pasted into the file is an unknown setting whose value is never shown.
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, yaml.safe_dump({"llm": {**LLM_SECTION, "api_key": key}})), environ={})
    assert "llm.api_key" in str(raised.value) and key not in str(raised.value)


@pytest.mark.parametrize("field, pasted", [
    ("dsn_env", "postgresql://app:s3cr3t-pw@db.internal:5432/app"),
    ("dsn_secret_block", "postgresql://app:s3cr3t-pw@db.internal/app"),
])
def test_a_connection_string_pasted_where_its_name_belongs_is_refused_without_quoting_it(tmp_path: Path, field: str,
                                                                                         pasted: str) -> None:
    config = write(tmp_path, "warehouse: {path: wh.duckdb}\nsources:\n  - name: app\n    format: postgres\n"
                             f"    postgres: {{{field}: '{pasted}', table: events, cursor: id}}\n")
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    assert "s3cr3t-pw" not in str(raised.value)
    assert field in str(raised.value)
