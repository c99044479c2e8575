"""The ingest and backfill flows, and every prefect.yaml entrypoint resolving."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from tests.belief_warehouse import T0, belief_warehouse, belief_warehouse_template  # noqa: F401
from tests.conftest import REPO_ROOT


def test_every_deployment_entrypoint_resolves_to_a_documented_flow() -> None:
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    entrypoints = [deployment["entrypoint"] for deployment in config["deployments"]]
    assert {"flows/ingest.py:ingest", "flows/refresh_beliefs.py:refresh_beliefs",
            "flows/publish.py:publish", "flows/evaluate.py:evaluate"} <= set(entrypoints)
    for entrypoint in entrypoints:
        flow = load_flow_from_entrypoint(str(REPO_ROOT / entrypoint), use_placeholder_flow=False)
        assert flow.description, f"{entrypoint} needs a docstring (the Prefect UI shows it)"


@pytest.mark.slow
def test_ingest_flow_loads_the_bundled_sample_and_publishes_counts(prefect_server, tmp_path: Path,
                                                                    qc_sample: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.ingest import ingest

    config = tmp_path / "selfmodel.yaml"
    config.write_text(f"warehouse: {{path: wh.duckdb}}\nsources:\n  - {{name: qc, format: stackexchange, path: {qc_sample}}}\n")
    [report] = ingest(config_path=str(config))
    assert report["rows_read"] == report["loaded"] + report["duplicates"] + report["quarantined"]
    assert report["loaded"] > 15_000

    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from events where source = 'qc'").fetchone()[0] == report["loaded"]
        assert con.execute("select status from ingest_batches").fetchall() == [("committed",)]
    finally:
        con.close()

    import asyncio

    async def latest_counts_artifact():
        async with get_client() as client:
            return await client.read_latest_artifacts()

    artifacts = {artifact.key: artifact for artifact in asyncio.run(latest_counts_artifact())}
    assert "ingest-counts" in artifacts
    assert str(report["loaded"]) in str(artifacts["ingest-counts"].data)

    [again] = ingest(config_path=str(config))
    assert again["loaded"] == 0 and again["rows_read"] == 0

    from flows.refresh_beliefs import refresh_beliefs

    refreshed = refresh_beliefs(config_path=str(config))
    assert refreshed["events_extracted"] == report["loaded"]

    import shutil

    from flows.evaluate import evaluate

    shutil.copytree(REPO_ROOT / "expectations", tmp_path / "expectations")
    evaluated = evaluate(config_path=str(config))
    verdicts = {run["suite"]: run["passed"] for run in evaluated["runs"] if not run["skipped"]}
    assert set(verdicts) == {"predictive", "labeled_qc", "demo_vs_production"}
    assert {v["suite"] for v in evaluated["validations"]} >= {"events_batch", "beliefs"}
    assert Path(evaluated["report"]).read_text().count("<svg") >= 3
    # The Prefect UI links the report and the Data Docs (link artifacts: a markdown link to the file).
    latest = {artifact.key: artifact for artifact in asyncio.run(latest_counts_artifact())}
    assert Path(evaluated["report"]).resolve().as_uri() in latest["eval-report-link"].data
    assert (tmp_path / "data_docs" / "index.html").resolve().as_uri() in latest["data-docs-link"].data
    assert refreshed["beliefs_total"] > 1000
    assert refreshed["as_of"].startswith("2018-09-0")  # default as-of: the newest event of the dump


def test_backfill_flow_refreshes_every_night_under_the_writer_lock(prefect_server, belief_warehouse) -> None:
    from datetime import timedelta

    from flows.backfill import backfill
    from selfmodel.lock import lock_path_for, read_holder

    settings = belief_warehouse()
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    [(believed_as_of,)] = con.execute("select max(as_of) from refresh_runs").fetchall()
    con.close()
    start, end = T0 + timedelta(days=2), T0 + timedelta(days=8)
    report = backfill(start=start, end=end, every_days=3.0, config_path=str(settings.base_dir / "selfmodel.yaml"))
    assert [night["as_of"] for night in report["nights"]] == [
        (start + timedelta(days=d)).isoformat() for d in (0, 3, 6)]
    assert report["nights"][0]["mode"] == "rewind"
    assert report["caught_up_to"] == believed_as_of.isoformat()  # the template was refreshed past the range
    assert read_holder(lock_path_for(settings.warehouse_path))["what"] == "backfill flow run"

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        starts = {row[0] for row in con.execute("select distinct valid_from from belief_history").fetchall()}
    finally:
        con.close()
    assert {start, start + timedelta(days=3), start + timedelta(days=6), believed_as_of} <= starts


def test_the_ingest_flow_refuses_a_file_in_two_sources_before_writing(prefect_server, tmp_path: Path) -> None:
    from flows.ingest import ingest

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.jsonl").write_text('{"event_id": "e1"}\n')
    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh/warehouse.duckdb}\nsources:\n  - {name: app, format: jsonl, path: logs}\n"
                      "  - {name: again, format: jsonl, path: logs/a.jsonl}\n")
    state = ingest(config_path=str(config), return_state=True)
    assert state.is_failed()
    assert "sources 'app' and 'again' both read logs/a.jsonl" in state.message
    assert not (tmp_path / "wh").exists()  # refused before the lock file or the warehouse was made
    # The same through `selfmodel ingest --prefect`: a config error (exit 2), as without --prefect.
    from click.testing import CliRunner

    from selfmodel.cli import main

    result = CliRunner().invoke(main, ["--config", str(config), "ingest", "--prefect"])
    assert result.exit_code == 2 and "both read logs/a.jsonl" in result.stderr


@pytest.mark.parametrize("entrypoint", ["flows/ingest.py:ingest", "flows/refresh_beliefs.py:refresh_beliefs",
                                        "flows/evaluate.py:evaluate", "flows/publish.py:publish"])
def test_a_step_flow_run_on_its_own_refuses_while_another_process_writes(prefect_server, tmp_path: Path,
                                                                         entrypoint: str) -> None:
    """A deployment of one step must not slip in between the steps of a nightly run in another process."""
    from tests.lock_holder import lock_held_elsewhere

    config = tmp_path / "selfmodel.yaml"
    config.write_text("warehouse: {path: wh/warehouse.duckdb}\nnightly: {lock_wait_seconds: 0}\n"
                      "sources:\n  - {name: app, format: jsonl, path: logs}\n")
    with lock_held_elsewhere(tmp_path / "wh" / "warehouse.duckdb", "nightly elsewhere"):
        flow = load_flow_from_entrypoint(str(REPO_ROOT / entrypoint), use_placeholder_flow=False)
        state = flow(config_path=str(config), return_state=True)
    assert state.is_failed()
    assert "only one writer" in state.message and "nightly elsewhere" in state.message
    assert not (tmp_path / "wh" / "warehouse.duckdb").exists()  # refused before opening anything
