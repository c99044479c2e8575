"""The warehouse file held open by a process that ignores the writer lock (a DuckDB shell, a notebook on
the live file): a run waits `nightly.lock_wait_seconds` for it, goes on as soon as it is released, and
otherwise ends as busy, the way a held writer lock ends a run: the nightly run is skipped (`selfmodel
nightly` exits 3 naming the holder, no traceback, no alert), a step flow on its own fails naming it. The
same when the file is taken between two steps, or inside a step, between two of its tasks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

# Imported here, not in a test: the first import of Prefect's flow API configures logging, which would
# drop the log capture of the test that happened to import it (caplog, below).
import flows.nightly as nightly_flow
from tests.conftest import REPO_ROOT
from tests.lock_holder import warehouse_open_elsewhere

EVENTS = ('{"event_id": "e1", "user_id": "u1", "occurred_at": "2024-01-01T00:00:00Z", "kind": "message", '
          '"text": "hello there"}\n'
          '{"event_id": "e2", "user_id": "u2", "occurred_at": "2024-01-02T00:00:00Z", "kind": "message", '
          '"text": "good morning"}\n')


def _write_config(folder: Path, lock_wait_seconds: float = 0, webhook_url: str | None = None) -> Path:
    (folder / "logs.jsonl").write_text(EVENTS, encoding="utf-8")
    if not (folder / "expectations").exists():
        shutil.copytree(REPO_ROOT / "expectations", folder / "expectations")
    config = {
        "warehouse": {"path": "wh/warehouse.duckdb", "analyst_copy": None},
        "snapshots": {"path": "wh/snapshots"},
        "sources": [{"name": "app", "format": "jsonl", "path": "logs.jsonl"}],
        "nightly": {"lock_wait_seconds": lock_wait_seconds},
    }
    if webhook_url:
        config["alerts"] = {"owners": {"nightly": [{"name": "Ops", "webhook": webhook_url}]}, "retries": 0,
                            "webhook_timeout_seconds": 5}
    path = folder / "selfmodel.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _warehouse(folder: Path) -> Path:
    return folder / "wh" / "warehouse.duckdb"


def _assert_logged_in_one_line(caplog: pytest.LogCaptureFixture, busy: str) -> None:
    """The run's logs (Prefect's engines included) say the warehouse is busy, and show no traceback."""
    assert busy in caplog.text
    assert "Traceback" not in caplog.text


def _steps(summary: dict) -> list[tuple[str, str]]:
    return [(step["step"], step["status"]) for step in summary["steps"]]


@pytest.mark.slow
def test_selfmodel_nightly_exits_3_at_once_naming_the_process_that_holds_the_warehouse_open(
        prefect_server, tmp_path: Path, webhook) -> None:
    from prefect.settings import PREFECT_API_URL

    config = _write_config(tmp_path, webhook_url=webhook.url)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    with warehouse_open_elsewhere(_warehouse(tmp_path)) as holder:
        started = time.monotonic()
        run = subprocess.Popen([str(Path(sys.executable).with_name("selfmodel")), "nightly", "--config", str(config)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = run.communicate(timeout=150)
        finally:
            run.kill()
        seconds = time.monotonic() - started
    assert run.returncode == 3, out + err
    assert seconds < 60, f"took {seconds:.0f} s: it retried instead of ending as busy"
    assert "skipped" in out.splitlines()[0]
    assert f"in use by process {holder.pid}" in out and "only one writer" in out
    assert "Traceback" not in out + err
    assert webhook.accepted() == []  # busy is not an incident: no alert


@pytest.mark.slow
def test_a_nightly_run_waits_for_the_warehouse_and_goes_on_as_soon_as_it_is_released(
        prefect_server, tmp_path: Path) -> None:
    config = _write_config(tmp_path, lock_wait_seconds=120)
    released: list[datetime] = []

    def release(holder: subprocess.Popen) -> None:
        released.append(datetime.now(timezone.utc))
        holder.stdin.close()

    with warehouse_open_elsewhere(_warehouse(tmp_path)) as holder:
        # Longer than the first retry delay a busy warehouse used to get (5 s), far shorter than the wait.
        threading.Timer(7.0, release, [holder]).start()
        state = nightly_flow.nightly(config_path=str(config), return_state=True)
    assert state.name != "Skipped", state.message
    summary = state.result(raise_on_failure=False)
    assert _steps(summary)[:2] == [("ingest", "completed"), ("refresh_beliefs", "completed")]
    assert summary["steps"][0]["rows_out"] == 2
    con = duckdb.connect(str(_warehouse(tmp_path)), read_only=True)
    try:
        [(batch_started,)] = con.execute("select started_at from ingest_batches").fetchall()
    finally:
        con.close()
    # It went on as soon as the holder let go, not at a retry some fixed delay later.
    assert 0 <= (batch_started - released[0]).total_seconds() < 5


def test_a_warehouse_opened_between_two_steps_skips_the_run_without_an_alert_or_traceback(
        prefect_server, tmp_path: Path, webhook, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    config = _write_config(tmp_path, lock_wait_seconds=1, webhook_url=webhook.url)
    ingest = nightly_flow.ingest
    holders: list[subprocess.Popen] = []
    with ExitStack() as still_open:

        def ingest_then_someone_opens_the_warehouse(**parameters):
            state = ingest(**parameters)
            holders.append(still_open.enter_context(warehouse_open_elsewhere(_warehouse(tmp_path))))
            return state

        monkeypatch.setattr(nightly_flow, "ingest", ingest_then_someone_opens_the_warehouse)
        state = nightly_flow.nightly(config_path=str(config), return_state=True)
    assert state.is_completed() and state.name == "Skipped", state.message
    summary = state.result()
    assert _steps(summary) == [("ingest", "completed"), ("refresh_beliefs", "busy"), ("evaluate", "not_run"),
                               ("publish", "not_run")]
    assert summary["status"] == "skipped" and f"process {holders[0].pid}" in summary["reason"]
    assert summary["holder"]["pid"] == holders[0].pid
    assert webhook.accepted() == []
    _assert_logged_in_one_line(caplog, f"in use by process {holders[0].pid}")


def test_a_warehouse_taken_inside_a_step_between_two_tasks_skips_the_run_too(
        prefect_server, tmp_path: Path, webhook, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """The race no check before a step can close: the file is free when the step starts and taken before
    its task connects. Simulated by checks that find it free; the task's connection meets the holder."""
    import selfmodel.lock

    config = _write_config(tmp_path, lock_wait_seconds=1, webhook_url=webhook.url)
    for module in (nightly_flow, selfmodel.lock):
        monkeypatch.setattr(module, "wait_until_free", lambda path, wait_seconds: None)
    with warehouse_open_elsewhere(_warehouse(tmp_path)) as holder:
        started = time.monotonic()
        state = nightly_flow.nightly(config_path=str(config), return_state=True)
        seconds = time.monotonic() - started
    assert state.is_completed() and state.name == "Skipped", state.message
    summary = state.result()
    assert _steps(summary) == [("ingest", "busy"), ("refresh_beliefs", "not_run"), ("evaluate", "not_run"),
                               ("publish", "not_run")]
    assert f"process {holder.pid}" in summary["reason"]
    assert seconds < 30, f"took {seconds:.0f} s: the task retried a busy warehouse"
    assert webhook.accepted() == []
    _assert_logged_in_one_line(caplog, f"in use by process {holder.pid}")


@pytest.mark.parametrize("entrypoint", ["flows/ingest.py:ingest", "flows/refresh_beliefs.py:refresh_beliefs",
                                        "flows/evaluate.py:evaluate", "flows/publish.py:publish"])
def test_a_step_flow_run_on_its_own_refuses_while_the_warehouse_file_is_open_elsewhere(
        prefect_server, tmp_path: Path, entrypoint: str, caplog) -> None:
    config = _write_config(tmp_path)
    with warehouse_open_elsewhere(_warehouse(tmp_path)) as holder:
        flow = load_flow_from_entrypoint(str(REPO_ROOT / entrypoint), use_placeholder_flow=False)
        started = time.monotonic()
        state = flow(config_path=str(config), return_state=True)
        seconds = time.monotonic() - started
    assert state.is_failed()
    assert "only one writer" in state.message and f"process {holder.pid}" in state.message
    assert seconds < 20, f"took {seconds:.0f} s: a task retried the busy warehouse"
    _assert_logged_in_one_line(caplog, f"in use by process {holder.pid}")


def test_selfmodel_ingest_prefect_exits_3_while_the_warehouse_file_is_open_elsewhere(
        prefect_server, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from selfmodel.cli import main

    config = _write_config(tmp_path)
    with warehouse_open_elsewhere(_warehouse(tmp_path)) as holder:
        result = CliRunner().invoke(main, ["--config", str(config), "ingest", "--prefect"])
    assert result.exit_code == 3, result.output
    assert f"process {holder.pid}" in result.output and "only one writer" in result.output
