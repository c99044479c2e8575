"""Data written to act on a terminal (escape sequences, a bidi override, rich markup) is shown, never obeyed.

One warehouse whose user id, event ids, texts, tags, file names and folder hold `ESC [2J` (clear screen),
`ESC ]0;title BEL` (set the window title) and U+202E (right-to-left override); every command that prints
what came from it must print those as visible escapes, and its JSON must still give the data back exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from selfmodel.cli import main
from selfmodel.cli.render import print_nightly
from selfmodel.settings import load_settings
from tests.belief_warehouse import record_quality
from tests.conftest import REPO_ROOT

CLEAR, TITLE, RLO = "\x1b[2J", "\x1b]0;title\x07", "\u202e"
RAW = ("\x1b", "\x07", RLO)
# A user id holding control or format characters is quarantined at ingest (invalid_user_id), so the data's
# user carries markup only; the hostile id still reaches the CLI as an argument, and the quarantine.
DATA_USER = "mallory[red]x[/red]"
USER = f"mal{CLEAR}lory{RLO}[red]x[/red]"
SHOWN_USER = "mal\\x1b[2Jlory\\u202e[red]x[/red]"  # the markup too is shown as written, not interpreted
QUERY = f"what next? {TITLE}{RLO}"
SUITE = "labeled_hostile"  # suite names are checked when a case file loads; its case ids and users are not


def _messages() -> list[dict]:
    texts = [f"I'm a nurse {CLEAR} and I love jazz {TITLE}{RLO} music. my favorite band is {RLO}queen{CLEAR}",
             f"I'm new to {TITLE}this{RLO}, as a nurse I work nights."]
    return [{"event_id": f"ev{TITLE}{day}", "user_id": DATA_USER, "kind": "message", "text": texts[day % 2],
             "occurred_at": f"2024-05-0{day + 1}T10:00:00Z",
             "tags": [f"jazz{CLEAR}", f"q{RLO}uantum", f"[red]t{TITLE}"]}
            for day in range(4)]


def _write(folder: Path) -> Path:
    (folder / "logs").mkdir()
    lines = [json.dumps(message) for message in _messages()]
    lines.append(json.dumps({**_messages()[0], "text": "the same id, other words"}))  # conflicting_duplicate
    lines.append('{"event_id": "bad' + CLEAR + RLO + '", not json ' + TITLE)  # malformed_json
    lines.append(json.dumps({**_messages()[1], "event_id": "hostile-user", "user_id": USER}))  # invalid_user_id
    (folder / "logs" / f"chat{CLEAR}{RLO}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    evals = folder / "expectations"
    (evals / "evals").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "expectations" / "bar.yaml", evals / "bar.yaml")
    shutil.copy(REPO_ROOT / "expectations" / "beliefs.json", evals / "beliefs.json")
    (evals / "evals" / "labeled_hostile.yaml").write_text(yaml.safe_dump({
        "suite": SUITE, "source": "app", "criterion": "hostile names",
        "cases": [{"id": f"case{CLEAR}{RLO}", "user_id": DATA_USER, "as_of": "2024-05-04T10:00:00Z",
                   "expect": [{"key": "role", "value": "astronaut", "min_confidence": 0.5}], "why": "fails"}]}))
    where = f"wh {TITLE}{RLO}"  # the warehouse folder: every path printed beside data carries it
    config = folder / "selfmodel.yaml"
    config.write_text(yaml.safe_dump({
        "warehouse": {"path": f"{where}/warehouse.duckdb", "analyst_copy": f"{where}/analyst.duckdb"},
        "snapshots": {"path": f"{where}/snapshots"},
        "sources": [{"name": "app", "format": "jsonl", "path": "logs/*.jsonl"},
                    {"name": "gone", "format": "jsonl", "path": f"missing{CLEAR}{RLO}/*.jsonl"}],
    }), encoding="utf-8")
    return config


def _run(config: Path, *args: str, input: str | None = None):
    # color=True: as on a terminal, where click would not strip ANSI sequences itself.
    return CliRunner().invoke(main, ["--config", str(config), *args], input=input, color=True)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The config of a warehouse built from hostile data (ingested, refreshed, published), and the build's output."""
    from warehouse.db import connect

    config = _write(tmp_path_factory.mktemp("hostile"))
    outputs = {"ingest": _run(config, "ingest"), "refresh": _run(config, "refresh")}
    assert outputs["refresh"].exit_code == 0, outputs["refresh"].output
    con = connect(load_settings(config, environ={}).warehouse_path)
    try:
        record_quality(con)
    finally:
        con.close()
    outputs["publish"] = _run(config, "publish")
    assert outputs["publish"].exit_code == 0, outputs["publish"].output
    return {"config": config, "outputs": outputs}


def assert_shown_not_obeyed(result, *shown: str) -> None:
    printed = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for char in RAW:
        assert char not in printed, f"{char!r} reached the terminal raw:\n{printed!r}"
    for text in shown:
        assert text in printed, f"{text!r} not shown in:\n{printed}"


def test_ingest_shows_the_failed_source_path_and_the_warehouse_folder(hostile) -> None:
    result = hostile["outputs"]["ingest"]
    assert result.exit_code == 1  # the source "gone" has no files
    assert_shown_not_obeyed(result, "missing\\x1b[2J\\u202e/*.jsonl", "wh \\x1b]0;title\\x07\\u202e/warehouse.duckdb")


def test_quarantine_shows_file_names_details_and_raw_records(hostile) -> None:
    result = _run(hostile["config"], "quarantine")
    assert result.exit_code == 0
    assert_shown_not_obeyed(result, "logs/chat\\x1b[2J\\u202e.jsonl:6", "logs/chat\\x1b[2J\\u202e.jsonl:5",
                            '{"event_id": "bad\\x1b[2J\\u202e", not json \\x1b]0;title\\x07',
                            "conflicting_duplicate", "ev\\x1b]0;title\\x070", "invalid_user_id",
                            "logs/chat\\x1b[2J\\u202e.jsonl:7")


def test_beliefs_explain_shows_keys_values_event_ids_and_texts(hostile) -> None:
    result = _run(hostile["config"], "beliefs", DATA_USER, "--explain", "--all")
    assert result.exit_code == 0
    assert_shown_not_obeyed(_run(hostile["config"], "beliefs", USER), f"user {SHOWN_USER} as of")
    assert_shown_not_obeyed(result, f"user {DATA_USER} as of", "jazz\\x1b[2j", "q\\u202euantum",
                            "[red]t\\x1b]0;title\\x07", "expertise@q\\u202euantum", "ev\\x1b]0;title\\x073",
                            "I'm a nurse \\x1b[2J and I love jazz")


def test_lookup_and_enrich_show_the_escapes(hostile) -> None:
    looked = _run(hostile["config"], "lookup", DATA_USER)
    assert looked.exit_code == 0
    assert_shown_not_obeyed(looked, f"user {DATA_USER} in snapshot", "q\\u202euantum")
    assert_shown_not_obeyed(_run(hostile["config"], "lookup", USER), f"user {SHOWN_USER} in snapshot")
    enriched = _run(hostile["config"], "enrich", DATA_USER, QUERY, "--min-confidence", "0.3")
    assert enriched.exit_code == 0
    assert_shown_not_obeyed(enriched, "About the user", "what next? \\x1b]0;title\\x07\\u202e")


def test_lookup_and_enrich_json_give_the_data_back_exactly_in_ascii(hostile) -> None:
    looked = _run(hostile["config"], "lookup", DATA_USER, "--json")
    assert_shown_not_obeyed(looked)
    assert looked.stdout.isascii()  # as every other --json: the escapes are JSON's own \\u escapes
    model = json.loads(looked.stdout)
    assert model["user_id"] == DATA_USER and f"q{RLO}uantum" in {belief["value"] for belief in model["beliefs"]}
    enriched = _run(hostile["config"], "enrich", DATA_USER, QUERY, "--min-confidence", "0.3", "--json")
    assert_shown_not_obeyed(enriched)
    assert enriched.stdout.isascii()
    payload = json.loads(enriched.stdout)
    assert payload["user_id"] == DATA_USER and payload["enriched_query"].endswith(QUERY) and payload["beliefs_used"]


@pytest.mark.parametrize("args, shown", [
    pytest.param(["snapshots"], "wh \\x1b]0;title\\x07\\u202e/snapshots", id="snapshots"),
    pytest.param(["rollback", f"v{CLEAR}{RLO}"], "v\\x1b[2J\\u202e", id="rollback"),
    pytest.param(["eval", "--suite", SUITE], f"{SUITE}: FAILED", id="eval"),
    pytest.param(["expectations", "--suite", "beliefs"], "wh \\x1b]0;title\\x07\\u202e/data_docs", id="expectations"),
    pytest.param(["report"], "wh \\x1b]0;title\\x07\\u202e/report.html", id="report"),
    pytest.param(["analyst-copy"], "wh \\x1b]0;title\\x07\\u202e/analyst.duckdb", id="analyst-copy"),
    pytest.param(["forget", USER], f"Delete everything held about {SHOWN_USER}?", id="forget"),  # answered "n"
])
def test_every_other_command_shows_what_came_from_data(hostile, args: list[str], shown: str) -> None:
    assert_shown_not_obeyed(_run(hostile["config"], *args, input="n\n"), shown)


def test_an_error_message_shows_the_path_it_quotes(tmp_path: Path) -> None:
    config = tmp_path / "selfmodel.yaml"
    config.write_text(yaml.safe_dump({"warehouse": {"path": f"not yet {CLEAR}{RLO}/warehouse.duckdb"}, "sources": []}))
    result = _run(config, "beliefs", "u1")
    assert result.exit_code == 1
    assert_shown_not_obeyed(result, "not yet \\x1b[2J\\u202e/warehouse.duckdb does not exist yet")


def test_nightly_summary_shows_step_details_and_paths(make_settings) -> None:
    from types import SimpleNamespace

    settings = make_settings(sources=[])
    summary = {"status": "failed", "run_name": f"run{TITLE}", "reason": f"ingest failed: bad file x{CLEAR}{RLO}.jsonl",
               "steps": [{"step": "ingest", "status": "failed", "seconds": 1.0, "rows_in": None, "rows_out": None,
                          "quarantined": None, "detail": f"no files found for missing{CLEAR}/*.jsonl"},
                         {"step": "evaluate", "status": "completed", "seconds": 1.0, "rows_in": 1, "rows_out": 1,
                          "quarantined": None, "detail": "predictive passed\n    predictive: ece 0.02 (<= 0.1)"}],
               "report": f"/tmp/r{RLO}.html"}
    state = SimpleNamespace(state_details=SimpleNamespace(flow_run_id="00000000-0000-0000-0000-000000000000"))
    runner = CliRunner()
    with runner.isolation(color=True) as (out, err, _):
        print_nightly(summary, state.state_details.flow_run_id, settings, "http://127.0.0.1:4200/runs")
    printed = out.getvalue().decode()
    for char in RAW:
        assert char not in printed
    assert "run\\x1b]0;title\\x07: FAILED" in printed and "x\\x1b[2J\\u202e.jsonl" in printed
    assert "missing\\x1b[2J/*.jsonl" in printed and "/tmp/r\\u202e.html" in printed
    assert "predictive passed\n    predictive: ece 0.02" in printed  # a multi-line detail keeps its lines



def test_warnings_logged_by_a_command_show_the_escapes_too(tmp_path: Path) -> None:
    """Without logging configured, Python prints WARNING records on stderr itself (a failed batch names its files)."""
    import subprocess
    import sys

    config = tmp_path / "selfmodel.yaml"
    gone = {"name": "gone", "format": "jsonl", "path": f"missing{CLEAR}{RLO}/*"}
    config.write_text(yaml.safe_dump({"warehouse": {"path": "wh.duckdb"}, "sources": [gone]}))
    result = subprocess.run([sys.executable, "-m", "selfmodel", "--config", str(config), "ingest", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "of source gone failed" in result.stderr
    assert not any(char in result.stderr + result.stdout for char in RAW), result.stderr
    assert "missing\\x1b[2J\\u202e/*" in result.stderr


def test_prefect_console_logs_of_nightly_and_serve_show_the_escapes_too() -> None:
    """Run logs printed by Prefect's own console handler (set up as `selfmodel nightly` sets it up)."""
    import subprocess
    import sys

    script = ("import logging\nfrom selfmodel.cli.prefect_runtime import offline_quiet_prefect\noffline_quiet_prefect()\n"
              "from prefect import flow\nimport prefect.main\n"
              f"logging.getLogger('selfmodel.ingest').warning({f'no files found at missing{CLEAR}{RLO}'!r})\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| WARNING | selfmodel.ingest - no files found at missing\\x1b[2J\\u202e" in result.stderr
    assert not any(char in result.stderr for char in RAW), result.stderr
