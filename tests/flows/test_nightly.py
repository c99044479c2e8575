"""The nightly flow end to end on the bundled real sample, against a temporary Prefect server:

a failed step stops the rest and the nightly owner hears about it once; two nightly runs at the same time
never write together (the second exits 3, naming the first); the next good run publishes and sends the
recovery notice; running the same night again changes no data table and gives the same snapshot
content hash; and a snapshot the audit refuses is a recorded outcome, not a failed run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest
import yaml

from selfmodel.lock import lock_path_for, read_holder
from tests.conftest import REPO_ROOT

AS_OF = datetime(2018, 9, 2, tzinfo=timezone.utc)  # the newest event of the bundled dump
# What a night produces; run logs (ingest_batches, refresh_runs, eval_runs, expectation_runs, ...) may grow.
DATA_TABLES = ("events", "quarantine", "labels", "observations", "belief_history", "beliefs")
ARTIFACTS = ("nightly-summary", "nightly-steps", "belief-summary", "ingest-counts", "belief-refresh", "eval-metrics",
             "eval-report", "snapshot-audit", "calibration")


def _write_config(folder: Path, qc_sample: Path, webhook_url: str, broken: bool = False,
                  strict: bool = False) -> Path:
    sources = [{"name": "qc", "format": "stackexchange", "path": str(qc_sample)}]
    if broken:
        sources.append({"name": "gone", "format": "jsonl", "path": "logs-that-do-not-exist"})
    config = {
        "warehouse": {"path": "wh/warehouse.duckdb", "analyst_copy": None},
        # strict: the audit also wants the ConvAI2 suite, which never runs here (no ConvAI2 data).
        "snapshots": {"path": "wh/snapshots", **({"required_eval_suites": ["labeled_convai2"]} if strict else {})},
        "sources": sources,
        "alerts": {"owners": {"nightly": [{"name": "Ops", "webhook": webhook_url}]},
                   "retries": 0, "webhook_timeout_seconds": 5},
        # as the bundled config: the success bar judges each key family's calibration
        "calibration": {"nightly": True},
    }
    path = folder / ("broken.yaml" if broken else "strict.yaml" if strict else "selfmodel.yaml")
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _tables(warehouse: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {table: con.execute(f"select * from {table} order by all").fetchall() for table in DATA_TABLES}
    finally:
        con.close()


def _count(warehouse: Path, sql: str) -> int:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def _selfmodel(*args: str) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    return subprocess.Popen([str(Path(sys.executable).with_name("selfmodel")), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _latest_artifacts() -> dict:
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    return {artifact.key: artifact for artifact in asyncio.run(read())}


@pytest.mark.slow
def test_nightly_fails_alerts_serialises_publishes_reruns_identically_and_refuses(
        prefect_server, tmp_path: Path, qc_sample: Path, webhook) -> None:
    from flows.nightly import nightly

    shutil.copytree(REPO_ROOT / "expectations", tmp_path / "expectations")
    broken = _write_config(tmp_path, qc_sample, webhook.url, broken=True)
    config = _write_config(tmp_path, qc_sample, webhook.url)
    warehouse = tmp_path / "wh" / "warehouse.duckdb"

    # 1. A source whose files are gone: ingest fails, nothing after it runs, the owner hears it once.
    for night in (1, 2):
        state = nightly(config_path=str(broken), as_of=AS_OF, return_state=True)
        assert state.is_failed() and "nightly step ingest failed" in state.message
        assert len(webhook.accepted()) == 1, f"night {night}: one alert per incident"
    [alert] = webhook.accepted()
    assert alert["suite"] == "nightly" and alert["kind"] == "failure"
    assert "ingest_completed" in alert["subject"]
    assert "refresh_beliefs: not run: needs ingest" in alert["text"]
    assert "where status = 'failed'" in alert["text"]
    assert _count(warehouse, "select count(*) from ingest_batches where status = 'failed'") == 2
    assert _count(warehouse, "select count(*) from refresh_runs") == 0
    assert not (tmp_path / "wh" / "snapshots" / "CURRENT").exists()

    # 2. Two nightly runs at once: the second exits 3 naming the first, which publishes.
    command = ("nightly", "--config", str(config), "--as-of", AS_OF.isoformat())
    first = _selfmodel(*command, "--json")
    deadline = time.monotonic() + 120
    while read_holder(lock_path_for(warehouse)).get("pid") != first.pid:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first run never took the writer lock"
        time.sleep(0.2)
    second = _selfmodel(*command)
    out, err = second.communicate(timeout=180)
    assert second.returncode == 3, out + err
    assert f"process {first.pid}" in out and "only one writer" in out
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, out + err
    run_one = json.loads(out.strip().splitlines()[-1])
    assert run_one["status"] == "published" and run_one["state"] == "Completed"
    assert [(step["step"], step["status"]) for step in run_one["steps"]] == [
        ("ingest", "completed"), ("refresh_beliefs", "completed"), ("calibrate", "completed"),
        ("evaluate", "completed"), ("publish", "completed")]
    assert run_one["steps"][0]["rows_in"] == 0  # the qc files were loaded by the failed nights already
    assert run_one["steps"][1]["rows_in"] > 15_000  # ... and are first turned into beliefs now
    assert "adopted cal-" in run_one["steps"][2]["detail"] and "re-folded" in run_one["steps"][2]["detail"]
    assert [a["kind"] for a in webhook.accepted()] == ["failure", "recovery"]

    # 3. The same night again: identical data and snapshot content; only the run logs grow.
    before = _tables(warehouse)
    batches = _count(warehouse, "select count(*) from ingest_batches")
    run_two = nightly(config_path=str(config), as_of=AS_OF)
    assert run_two["status"] == "published"
    assert run_two["snapshot"]["content_hash"] == run_one["snapshot"]["content_hash"]
    assert run_two["snapshot"]["version"] != run_one["snapshot"]["version"]  # a new version, the same content
    after = _tables(warehouse)
    for table in DATA_TABLES:
        assert after[table] == before[table], f"{table} changed on a re-run"
    assert len(after["events"]) > 15_000 and len(after["beliefs"]) > 1_000
    assert _count(warehouse, "select count(*) from ingest_batches") == batches + 1
    manifests = [json.loads(p.read_text())["content_hash"]
                 for p in sorted((tmp_path / "wh" / "snapshots").glob("*/manifest.json"))]
    assert manifests == [run_one["snapshot"]["content_hash"]] * 2
    # each snapshot says which calibration its confidences came from (a rollback puts it back in force)
    calibrations = {json.loads(p.read_text())["calibration_id"]
                    for p in (tmp_path / "wh" / "snapshots").glob("*/manifest.json")}
    assert len(calibrations) == 1 and calibrations.pop() in run_one["steps"][2]["detail"]
    assert len(webhook.accepted()) == 2  # healthy again: nothing more to say

    artifacts = _latest_artifacts()
    assert set(ARTIFACTS) <= set(artifacts)
    summary = artifacts["nightly-summary"].data
    assert run_two["snapshot"]["version"] in summary and run_two["snapshot"]["content_hash"] in summary
    assert "| publish | completed |" in summary and "report.html" in summary

    # 4. A snapshot its audit refuses: recorded, not a failure; the current one stays; the owner hears it.
    strict = _write_config(tmp_path, qc_sample, webhook.url, strict=True)
    state = nightly(config_path=str(strict), as_of=AS_OF, return_state=True)
    assert state.is_completed()
    refused = state.result()
    assert refused["status"] == "not_published" and refused["steps"][-1]["status"] == "refused"
    assert "labeled_convai2" in refused["reason"]
    assert refused["snapshot"]["current"] == run_two["snapshot"]["version"]
    assert (tmp_path / "wh" / "snapshots" / "CURRENT").read_text().strip() == run_two["snapshot"]["version"]
    assert [a["kind"] for a in webhook.accepted()] == ["failure", "recovery", "failure"]
    assert "snapshot_published" in webhook.accepted()[-1]["subject"]


def test_serve_schedules_the_nightly_flow_at_the_configured_cron_and_zone(tmp_path: Path) -> None:
    from flows.nightly import nightly_deployment

    deployment = nightly_deployment(str(tmp_path / "selfmodel.yaml"), "30 3 * * 1-5", "Europe/Berlin", name="weekdays")
    [scheduled] = deployment.schedules
    assert (scheduled.schedule.cron, scheduled.schedule.timezone) == ("30 3 * * 1-5", "Europe/Berlin")
    assert deployment.name == "weekdays" and deployment.flow_name == "nightly"
    assert deployment.parameters == {"config_path": str(tmp_path / "selfmodel.yaml")}


def test_serve_refuses_a_bad_schedule_or_no_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from selfmodel.cli import main

    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh.duckdb}\nnightly: {cron: '0 4 * * *', timezone: UTC}\n")
    # serve sets these when unset; set them here first so the test leaves the environment as it found it
    for name, default in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
                          "WARNING"), ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")):
        monkeypatch.setenv(name, os.environ.get(name, default))
    runner = CliRunner()
    # No server (whatever a session fixture set up): refused before anything is served.
    with temporary_settings(updates={PREFECT_API_URL: None}):
        no_server = runner.invoke(main, ["--config", str(config), "serve"])
    assert no_server.exit_code == 2 and "prefect server start" in no_server.output
    # A server that is never contacted: a bad schedule is refused first.
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        for option, value in (("--cron", "0 25 * * *"), ("--cron", "every night"), ("--timezone", "Mars/Olympus")):
            bad = runner.invoke(main, ["--config", str(config), "serve", option, value])
            assert bad.exit_code == 2 and "invalid schedule" in bad.output, bad.output


def test_a_nightly_run_as_of_the_future_is_refused_before_ingest_writes(prefect_server, tmp_path: Path) -> None:
    """A deployment's as_of is a parameter anyone can type: 9999-01-01 would decay every belief to 0."""
    from flows.nightly import nightly

    (tmp_path / "logs.jsonl").write_text('{"event_id": "e1", "user_id": "u1", "kind": "message", "text": "hi", '
                                         '"occurred_at": "2024-06-01T12:00:00Z"}\n')
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh/warehouse.duckdb, analyst_copy: null}\n"
                      "sources:\n  - {name: app, format: jsonl, path: logs.jsonl}\n")
    state = nightly(config_path=str(config), as_of=datetime(9999, 1, 1, tzinfo=timezone.utc), return_state=True)
    assert state.is_failed() and "in the future" in state.message
    warehouse = tmp_path / "wh" / "warehouse.duckdb"
    if warehouse.exists():  # the failure hook may have opened it to record an alert; nothing was ingested
        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            assert con.execute("select count(*) from ingest_batches").fetchone()[0] == 0
        finally:
            con.close()
