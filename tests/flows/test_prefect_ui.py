"""What Prefect's users expect to see of a run: selfmodel's own log records in the run's logs, progress
artifacts for long steps, events an automation can act on, one run at a time per writing deployment."""

from __future__ import annotations

import asyncio

import pytest
import yaml
# Imported here, not in a test: the first import of Prefect's flow API configures logging (see test_publish_flow).
from prefect.testing.fixtures import asserting_events_worker  # noqa: F401  (fixture)

from flows.publish import publish
from flows.refresh_beliefs import refresh_beliefs
from tasks.prefect_ui import EVAL_FAILED_BAR, EVAL_REGRESSED, SNAPSHOT_REFUSED, eval_events
from tests.belief_warehouse import belief_warehouse, belief_warehouse_template, record_quality  # noqa: F401
from tests.conftest import REPO_ROOT
from warehouse.db import connect


def _run_logs_and_artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)  # logs go to the API in batches

    async def read():
        async with get_client() as client:
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return logs, artifacts

    return asyncio.run(read())


def test_a_refresh_flow_run_shows_selfmodel_log_records_and_a_finished_progress_artifact(prefect_server,
                                                                                         belief_warehouse):
    settings = belief_warehouse()
    state = refresh_beliefs(config_path=str(settings.base_dir / "selfmodel.yaml"), full=True, return_state=True)
    assert state.is_completed(), state.message

    logs, artifacts = _run_logs_and_artifacts(state.state_details.flow_run_id)
    ours = [log for log in logs if log.name.startswith("selfmodel.")]
    # the refresh's own summary line (logger selfmodel.beliefs), filed under the run like Prefect's own logs
    assert any(log.name == "selfmodel.beliefs" and "observations folded into" in log.message
               for log in ours), [(log.name, log.message) for log in logs]
    assert all(log.flow_run_id == state.state_details.flow_run_id for log in ours)

    [progress] = [artifact for artifact in artifacts if artifact.type == "progress"]
    assert progress.data == 100.0 and progress.description.startswith("Belief refresh")


def test_the_refresh_reports_its_steps_to_a_progress_callback(belief_warehouse):
    from selfmodel.beliefs.refresh import REFRESH_STEPS
    from selfmodel.beliefs.refresh import refresh_beliefs as refresh

    settings = belief_warehouse()
    heard: list[tuple[str, int, int]] = []
    con = connect(settings.warehouse_path)
    try:
        refresh(con, settings, full=True, progress=lambda step, done, total: heard.append((step, done, total)))
    finally:
        con.close()
    total = len(REFRESH_STEPS)
    assert heard == [*((step, done, total) for done, step in enumerate(REFRESH_STEPS)), ("done", total, total)]


def test_a_refused_snapshot_emits_an_event_an_automation_can_act_on(prefect_server, belief_warehouse,
                                                                    asserting_events_worker):  # noqa: F811
    settings = belief_warehouse()
    con = connect(settings.warehouse_path)
    record_quality(con, eval_passed=False)  # the audit refuses a snapshot while the latest eval run fails
    con.close()

    state = publish(config_path=str(settings.base_dir / "selfmodel.yaml"), tell_owners=False, return_state=True)
    assert state.is_failed()
    asserting_events_worker.drain()
    [event] = [event for event in asserting_events_worker._client.events if event.event == SNAPSHOT_REFUSED]
    assert event.resource.id.startswith("selfmodel.snapshot.")
    assert event.payload["current"] is None and "eval" in event.payload["reason"]
    assert event.payload["failed_checks"]  # the audit checks that refused it


def test_a_regressed_or_failing_eval_suite_emits_its_event(prefect_server, asserting_events_worker):  # noqa: F811
    regression = {"metric": "precision_at_threshold", "before": 0.84, "after": 0.71, "interval": [-0.2, -0.1],
                  "p_value": 0.002}
    runs = [
        {"suite": "predictive", "run_id": "r1", "skipped": None, "regressions": [regression],
         "bar": {"precision_at_threshold": {"passed": True}}},
        {"suite": "labeled_qc", "run_id": "r2", "skipped": None, "regressions": [],
         "bar": {"hit_rate": {"passed": False}, "coverage": {"passed": True}}},
        {"suite": "demo_vs_production", "run_id": "r3", "skipped": None, "regressions": [],
         "bar": {"gap": {"passed": True}}},
        {"suite": "enrichment", "run_id": None, "skipped": "no llm", "regressions": [], "bar": {}},
    ]
    assert eval_events(runs) == [EVAL_REGRESSED, EVAL_FAILED_BAR]
    asserting_events_worker.drain()
    events = {event.event: event for event in asserting_events_worker._client.events
              if event.event.startswith("selfmodel.")}
    assert set(events) == {EVAL_REGRESSED, EVAL_FAILED_BAR}
    regressed = events[EVAL_REGRESSED]
    assert regressed.resource.id == "selfmodel.eval-suite.predictive"
    assert regressed.payload["regressions"] == [{"metric": "precision_at_threshold", "before": 0.84, "after": 0.71,
                                                 "p_value": 0.002}]
    assert events[EVAL_FAILED_BAR].payload["failed_metrics"] == ["hit_rate"]


WRITING_DEPLOYMENTS = {"nightly", "ingest", "refresh_beliefs", "calibrate", "backfill", "publish", "evaluate"}


def test_every_writing_deployment_runs_one_at_a_time():
    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    limits = {deployment["name"]: deployment.get("concurrency_limit") for deployment in declared["deployments"]}
    assert WRITING_DEPLOYMENTS <= set(limits)
    for name in WRITING_DEPLOYMENTS:
        assert limits[name] == {"limit": 1, "collision_strategy": "ENQUEUE"}, name


LABELED_CHAT = """\
suite: labeled_chat
source: chat
criterion: A case passes when every expectation holds for the user's beliefs as of the case's as_of.
cases:
- id: chat-alice-astronomy
  user_id: alice
  as_of: '2024-01-20T00:00:00Z'
  expect:
  - {key: topic, value: astronomy, min_confidence: 0.9}
  why: alice talks about jazz and nursing, never astronomy, so this case fails
"""


@pytest.mark.slow
def test_an_evaluate_flow_run_whose_suite_fails_its_bar_emits_the_event(prefect_server, belief_warehouse, tmp_path,
                                                                        asserting_events_worker):  # noqa: F811
    import shutil

    from flows.evaluate import evaluate

    evals = tmp_path / "expectations"
    shutil.copytree(REPO_ROOT / "expectations", evals)
    (evals / "evals" / "labeled_chat.yaml").write_text(LABELED_CHAT)
    bar = (evals / "bar.yaml").read_text()
    (evals / "bar.yaml").write_text(bar.replace("  labeled_qc:\n", "  labeled_chat:\n    case_pass_rate: {min: 0.70}\n"
                                                                    "  labeled_qc:\n", 1))
    settings = belief_warehouse(eval={"path": str(evals)}, quality={"path": str(evals)})
    result = evaluate(config_path=str(settings.base_dir / "selfmodel.yaml"), suites=["labeled_chat"])
    [suite_run] = result["runs"]
    assert not suite_run["passed"] and not suite_run["skipped"]
    asserting_events_worker.drain()
    [event] = [event for event in asserting_events_worker._client.events if event.event == EVAL_FAILED_BAR]
    assert event.resource.id == "selfmodel.eval-suite.labeled_chat"
    assert event.payload["run_id"] == suite_run["run_id"] and event.payload["failed_metrics"] == ["case_pass_rate"]
