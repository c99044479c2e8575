"""The command line: help everywhere, the --json contracts, exit codes, and no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from selfmodel.cli import main
from tests.lock_holder import lock_held_elsewhere

JSONL_LINES = [
    {"event_id": "e1", "user_id": "u1", "occurred_at": "2024-05-01T10:00:00Z", "kind": "message", "text": "hello"},
    {"event_id": "e2", "user_id": "u1", "occurred_at": 1714557600, "kind": "message", "text": "again"},
    {"event_id": "e3", "occurred_at": "2024-05-01T10:00:00Z", "kind": "message", "text": "who am i"},
]


def every_command(group: click.Group) -> list[list[str]]:
    paths = []
    for name, command in group.commands.items():
        paths.append([name])
        if isinstance(command, click.Group):
            paths.extend([name, *sub] for sub in every_command(command))
    return paths


@pytest.mark.parametrize("path", every_command(main), ids=" ".join)
def test_every_command_has_help(path: list[str]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


@pytest.fixture
def jsonl_config(tmp_path: Path) -> Path:
    (tmp_path / "logs.jsonl").write_text("\n".join(json.dumps(line) for line in JSONL_LINES) + "\n")
    config = tmp_path / "selfmodel.yaml"
    config.write_text(
        "warehouse: {path: wh.duckdb}\nsources:\n  - {name: app, format: jsonl, path: logs.jsonl}\n"
    )
    return config


def test_ingest_json_prints_exactly_one_object_with_the_contract_keys(jsonl_config: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(jsonl_config), "ingest", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # fails if anything else shares stdout
    [batch] = payload["batches"]
    assert {key: batch[key] for key in ("source", "rows_read", "loaded", "duplicates", "quarantined")} == {
        "source": "app", "rows_read": 3, "loaded": 2, "duplicates": 0, "quarantined": 1,
    }
    assert re.fullmatch(r"\d{8}T\d{6}-app-[0-9a-f]{8}", batch["batch_id"])

    again = json.loads(CliRunner().invoke(main, ["--config", str(jsonl_config), "ingest", "--json"]).stdout)
    assert again["batches"][0]["rows_read"] == 0


def test_quarantine_json_lists_the_reason_and_the_raw_record(jsonl_config: Path) -> None:
    CliRunner().invoke(main, ["--config", str(jsonl_config), "ingest"])
    result = CliRunner().invoke(main, ["--config", str(jsonl_config), "quarantine", "--json", "--reason",
                                       "missing_user_id"])
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["counts"] == [{"source": "app", "reason": "missing_user_id", "records": 1}]
    [record] = payload["records"]
    assert record["line_no"] == 3 and "who am i" in record["raw_preview"]


def test_quarantine_says_what_each_reason_means(jsonl_config: Path) -> None:
    CliRunner().invoke(main, ["--config", str(jsonl_config), "ingest"])
    result = CliRunner().invoke(main, ["--config", str(jsonl_config), "quarantine"])
    assert result.exit_code == 0
    assert "missing_user_id" in result.stdout and "no user_id" in result.stdout


def test_bad_config_exits_2_with_a_message_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "selfmodel.yaml"
    config.write_text("sources:\n  - {name: app, format: xml, path: logs}\n")
    result = subprocess.run([sys.executable, "-m", "selfmodel", "--config", str(config), "ingest"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "sources.0.format" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_invalid_json_path_in_a_mapping_exits_2_before_any_ingest(jsonl_config: Path) -> None:
    jsonl_config.write_text(jsonl_config.read_text().replace("path: logs.jsonl}", "path: logs.jsonl, "
                                                             "mapping: {text: '$['}}"))
    result = subprocess.run([sys.executable, "-m", "selfmodel", "--config", str(jsonl_config), "ingest"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    # Only the error: no traceback, and nothing from the DuckDB connection that checked the path.
    assert result.stderr.splitlines() == [
        f"error: invalid config {jsonl_config}:",
        "  sources.0.mapping.text: Value error, invalid JSON path '$[': JSON path error near '[' (got '$[')"]
    assert not (jsonl_config.parent / "wh.duckdb").exists()


@pytest.mark.parametrize("command", [["ingest"], ["refresh"], ["publish"]])
def test_a_warehouse_folder_that_cannot_be_made_exits_1_with_one_line(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "a-file").write_text("a file where the warehouse folder should be")
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: a-file/wh/warehouse.duckdb}\n"
                      "sources:\n  - {name: app, format: jsonl, path: logs}\n")
    result = subprocess.run([sys.executable, "-m", "selfmodel", "--config", str(config), *command],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ") and "a-file" in result.stderr


def test_running_out_of_memory_is_one_line_naming_the_setting_and_nothing_is_half_written(
        tmp_path: Path, qc_sample: Path) -> None:
    import duckdb

    config = tmp_path / "selfmodel.yaml"
    source = f"sources:\n  - {{name: qc, format: stackexchange, path: {qc_sample}}}\n"
    config.write_text("warehouse: {path: wh.duckdb}\n" + source)
    assert CliRunner().invoke(main, ["--config", str(config), "ingest"]).exit_code == 0
    config.write_text("warehouse: {path: wh.duckdb, memory_limit: 4MB}\n" + source)  # far too little for a refresh
    result = subprocess.run([sys.executable, "-m", "selfmodel", "--config", str(config), "refresh", "--full"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the warehouse ran out of memory: ") and "warehouse.memory_limit" in line
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:  # the refresh's transaction was rolled back
        assert con.execute("select count(*) from observations").fetchone() == (0,)
        assert con.execute("select count(*) from refresh_runs").fetchone() == (0,)
    finally:
        con.close()


def test_forget_erases_the_user_from_the_analyst_copy_at_once(jsonl_config: Path) -> None:
    import duckdb

    assert CliRunner().invoke(main, ["--config", str(jsonl_config), "ingest"]).exit_code == 0
    assert CliRunner().invoke(main, ["--config", str(jsonl_config), "analyst-copy"]).exit_code == 0
    copy = jsonl_config.parent / ".selfmodel" / "analyst" / "warehouse.duckdb"

    def held_in_copy(user: str) -> int:
        con = duckdb.connect(str(copy), read_only=True)
        try:
            return con.execute("select count(*) from events where user_id = ?", [user]).fetchone()[0]
        finally:
            con.close()

    assert held_in_copy("u1") > 0
    result = CliRunner().invoke(main, ["--config", str(jsonl_config), "forget", "u1", "--yes"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted"]["events"] > 0
    assert held_in_copy("u1") == 0


def test_refresh_and_beliefs_json_follow_the_contract_and_explain_names_the_evidence(tmp_path: Path) -> None:
    texts = ["I'm a nurse and I love jazz music.", "As a nurse I work nights, jazz helps.",
             "I'm a nurse. Any tips for sleeping after night shifts?", "Jazz again tonight, I love jazz music."]
    lines = [{"event_id": f"n{i}", "user_id": "nina", "occurred_at": f"2024-05-0{i + 1}T10:00:00Z", "kind": "message",
              "text": text} for i, text in enumerate(texts)]
    (tmp_path / "logs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh.duckdb}\nsources:\n  - {name: app, format: jsonl, path: logs.jsonl}\n")
    run = lambda *args: CliRunner().invoke(main, ["--config", str(config), *args])  # noqa: E731
    assert run("ingest").exit_code == 0
    refreshed = run("refresh", "--json")
    assert refreshed.exit_code == 0, refreshed.output
    assert json.loads(refreshed.stdout)["events_extracted"] == 4

    shown = run("beliefs", "nina", "--json")
    payload = json.loads(shown.stdout)  # exactly one object
    assert set(payload) == {"user_id", "as_of", "beliefs"} and payload["user_id"] == "nina"
    assert payload["as_of"].startswith("2024-05-04T10:00:00")
    assert all(set(b) == {"key", "value", "confidence", "evidence_count", "last_evidence_at"}
               for b in payload["beliefs"])
    role = next(b for b in payload["beliefs"] if b["key"] == "role")
    assert role["value"] == "nurse" and role["evidence_count"] == 3 and 0 < role["confidence"] < 1

    earlier = json.loads(run("beliefs", "nina", "--json", "--as-of", "2024-05-01T12:00:00Z").stdout)
    assert next(b for b in earlier["beliefs"] if b["key"] == "role")["evidence_count"] == 1

    explained = run("beliefs", "nina", "--explain")
    assert explained.exit_code == 0
    lines = explained.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line[3:].startswith("role "))
    evidence = []
    for line in lines[start + 1:]:
        if not line.startswith("       "):  # the next belief
            break
        evidence += re.findall(r"\bn\d\b", line)
    assert sorted(evidence) == ["n0", "n1", "n2"]  # the three role statements, not the jazz-only message


def test_report_reads_the_analyst_copy_while_a_flow_writes(jsonl_config: Path, tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["--config", str(jsonl_config), "ingest"]).exit_code == 0
    assert CliRunner().invoke(main, ["--config", str(jsonl_config), "analyst-copy"]).exit_code == 0
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys, duckdb\ncon = duckdb.connect(sys.argv[1])\nprint('open', flush=True)\n"
         "sys.stdin.read()\n", str(jsonl_config.parent / "wh.duckdb")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        result = CliRunner().invoke(main, ["--config", str(jsonl_config), "report", "--out", str(tmp_path / "r.html")])
    finally:
        writer.stdin.close()
        writer.wait(10)
    assert result.exit_code == 0, result.output
    assert "analyst copy" in result.stderr and (tmp_path / "r.html").read_text().startswith("<!doctype html>")


@pytest.mark.parametrize("command", ["ingest", "quarantine"])
def test_unknown_source_exits_2(jsonl_config: Path, command: str) -> None:
    result = CliRunner().invoke(main, ["--config", str(jsonl_config), command, "--source", "nope"])
    assert result.exit_code == 2
    assert "no source named 'nope'" in result.stderr


@pytest.mark.parametrize("options", [[], ["--source", "app"], ["--source", "again"]])
def test_a_file_in_two_sources_exits_2_naming_both(jsonl_config: Path, options: list[str]) -> None:
    with jsonl_config.open("a") as config:
        config.write("  - {name: again, format: jsonl, path: '*.jsonl'}\n")
    result = CliRunner().invoke(main, ["--config", str(jsonl_config), "ingest", "--json", *options])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: sources 'app' and 'again' both read logs.jsonl: ")
    assert not (jsonl_config.parent / "wh.duckdb").exists()


def test_ingest_names_a_likely_cause_once_per_file(tmp_path: Path) -> None:
    (tmp_path / "semi.csv").write_text("event_id;user_id;occurred_at;kind;text\n"
                                       "c1;u2;2024-06-01T12:00:00Z;message;hi\n")
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh.duckdb}\nsources:\n  - {name: app, format: csv, path: semi.csv}\n")
    hint = 'the header has no commas but 4 semicolons: set csv_delimiter: ";" for this source'

    result = CliRunner().invoke(main, ["--config", str(config), "ingest"])

    assert result.exit_code == 0, result.output
    assert [line for line in result.stdout.splitlines() if "csv_delimiter" in line] == [f"hint: app: semi.csv: {hint}"]
    (tmp_path / "semi.csv").write_text("event_id;user_id;occurred_at;kind;text\n")  # rewritten: read again
    again = json.loads(CliRunner().invoke(main, ["--config", str(config), "ingest", "--json"]).stdout)
    assert again["batches"][0]["files"] == [{"path": "semi.csv", "action": "rewritten"}]  # no rows, no hint


def test_a_source_that_cannot_run_exits_1_but_quarantine_alone_does_not(tmp_path: Path) -> None:
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh.duckdb}\nsources:\n  - {name: gone, format: jsonl, path: missing/*.jsonl}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "ingest", "--json"])
    assert result.exit_code == 1
    [batch] = json.loads(result.stdout)["batches"]
    assert batch["status"] == "failed" and "no files found" in batch["error"]


def test_quarantine_before_any_ingest_says_so(tmp_path: Path) -> None:
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh.duckdb}\nsources: []\n")
    result = CliRunner().invoke(main, ["--config", str(config), "quarantine"])
    assert result.exit_code == 1
    assert "run `selfmodel ingest` first" in result.stderr


@pytest.mark.parametrize("command", [
    ["ingest"], ["refresh"], ["eval"], ["expectations"], ["publish"], ["forget", "u1", "--yes"],
    ["backfill", "--from", "2024-05-01", "--to", "2024-05-02"],
])
def test_every_writing_command_exits_3_while_another_run_holds_the_writer_lock(jsonl_config: Path,
                                                                                 command: list[str]) -> None:
    """Between the nightly run's steps DuckDB's own file lock is free: the writer lock must still stop a writer."""
    import duckdb

    duckdb.connect(str(jsonl_config.parent / "wh.duckdb")).close()  # a warehouse DuckDB itself would let in
    # Held by another process: inside one process the lock is re-entrant (a step flow inside the nightly run).
    with lock_held_elsewhere(jsonl_config.parent / "wh.duckdb", "nightly flow run test-night"):
        result = CliRunner().invoke(main, ["--config", str(jsonl_config), *command])
    assert result.exit_code == 3, result.output
    assert "nightly flow run test-night" in result.stderr and "Traceback" not in result.output


def test_a_dry_run_leaves_the_analyst_copy_as_it_was(jsonl_config: Path) -> None:
    from selfmodel.settings import load_settings

    assert CliRunner().invoke(main, ["--config", str(jsonl_config), "ingest"]).exit_code == 0
    copy = load_settings(jsonl_config, environ={}).analyst_copy_path
    assert copy is not None and copy.exists()  # every writing command refreshes it
    before = (copy.stat().st_ino, copy.stat().st_mtime_ns)
    result = CliRunner().invoke(main, ["--config", str(jsonl_config), "calibrate", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (copy.stat().st_ino, copy.stat().st_mtime_ns) == before
