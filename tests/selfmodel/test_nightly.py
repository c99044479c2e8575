"""The nightly run's plain logic: what stops after a failure, what the owners read, the summary."""

from __future__ import annotations

from datetime import datetime, timezone

from selfmodel.alerts import Incident, render
from selfmodel.nightly import (
    STEPS, NightlySummary, StepResult, evaluate_step, failure_outcome, ingest_step, not_run_after, publish_step,
    run_outcome, summary_markdown,
)

AS_OF = datetime(2018, 9, 2, tzinfo=timezone.utc)


def _completed(*names: str) -> list[StepResult]:
    return [StepResult(name, "completed", 1.0) for name in names]


def test_a_failed_step_stops_every_step_after_it() -> None:
    assert [(s.step, s.status, s.detail) for s in not_run_after("refresh_beliefs")] == [
        ("evaluate", "not_run", "not run: needs refresh_beliefs"),
        ("publish", "not_run", "not run: needs evaluate"),
    ]
    assert not_run_after("publish") == []
    assert [s.step for s in not_run_after("ingest")] == list(STEPS[1:])


def test_a_failed_step_alerts_with_the_step_the_steps_skipped_and_the_sql() -> None:
    steps = _completed("ingest") + [StepResult("refresh_beliefs", "failed", 2.0, detail="boom")]
    steps += not_run_after("refresh_beliefs")
    outcome = failure_outcome("run-1", "brave-otter", "refresh_beliefs", "RefreshError: boom", steps, AS_OF)
    assert not outcome.healthy
    assert [change.metric for change in outcome.bar_failures] == ["refresh_beliefs_completed"]
    assert "refresh_runs" in outcome.reproduce_sql
    assert outcome.metrics == {"ingest_completed": 1.0, "refresh_beliefs_completed": 0.0,
                               "evaluate_completed": None, "publish_completed": None}
    subject, body = render("nightly", "failure", outcome,
                           Incident("nightly-1", datetime(2026, 1, 1, tzinfo=timezone.utc), None))
    assert subject.startswith("[selfmodel] nightly failed its bar: refresh_beliefs_completed 0")
    assert "refresh_beliefs: failed: RefreshError: boom" in body
    assert "publish: not run: needs evaluate" in body
    assert "prefect flow-run inspect run-1" in body


def test_a_failed_ingest_points_at_the_failed_batches() -> None:
    outcome = failure_outcome("run-1", "x", "ingest", "source gone failed", [], None)
    assert "from ingest_batches" in outcome.reproduce_sql and "status = 'failed'" in outcome.reproduce_sql


def test_a_failure_outside_any_step_still_says_where_to_look() -> None:
    outcome = failure_outcome("run-1", "x", None, "FlowRunTimeoutError", [], None)
    assert outcome.bar_failures[0].metric == "run_completed"
    assert "snapshot_audits" in outcome.reproduce_sql and "ingest_batches" in outcome.reproduce_sql


def test_a_published_run_is_healthy_and_a_refused_snapshot_is_an_incident() -> None:
    published = _completed(*STEPS)
    assert run_outcome("r", "n", published, AS_OF).healthy
    refused = _completed(*STEPS[:-1]) + [StepResult("publish", "refused", 1.0, rows_out=0, detail="eval: failed")]
    outcome = run_outcome("r", "n", refused, AS_OF)
    assert not outcome.healthy
    assert outcome.bar_failures[0].metric == "snapshot_published"
    assert "snapshot_audits" in outcome.reproduce_sql
    assert outcome.metrics["publish_completed"] == 0.0


def test_steps_count_rows_in_out_and_quarantined() -> None:
    step = ingest_step([{"source": "a", "rows_read": 10, "loaded": 7, "duplicates": 1, "quarantined": 2},
                        {"source": "b", "rows_read": 5, "loaded": 5, "duplicates": 0, "quarantined": 0}], 1.5)
    assert (step.rows_in, step.rows_out, step.quarantined) == (15, 12, 2)
    refused = publish_step({"published": False, "version": "v", "reason": "eval failed", "current": "old",
                            "rows": 9}, 0.5)
    assert (refused.status, refused.rows_out) == ("refused", 0) and "old stays current" in refused.detail


def test_the_evaluate_step_shows_each_bar_metric_beside_its_threshold() -> None:
    bar = {"precision_at_threshold": {"op": ">=", "threshold": 0.75, "value": 0.7966, "passed": True},
           "ece": {"op": "<=", "threshold": 0.1, "value": 0.19, "passed": False},
           "precision_gap": {"op": "<=", "threshold": 0.2, "value": None, "passed": False}}
    step = evaluate_step({"validations": [{"rows": 5, "blocking_failures": 0}],
                          "runs": [{"suite": "predictive", "passed": False, "bar": bar, "regressions": [{}]},
                                   {"suite": "labeled_convai2", "skipped": True}]}, 2.0)
    first, predictive = step.detail.splitlines()
    assert first == "predictive FAILED; 1 validations, 0 blocking failures"
    assert predictive == ("    predictive: precision_at_threshold 0.797 (>= 0.75), ece 0.19 (<= 0.1) FAILED, "
                          "precision_gap n/a (<= 0.2) FAILED; 1 regression(s)")
    summary = NightlySummary("n", "published", [step], "/wh", "/snapshots")
    [row] = [line for line in summary_markdown(summary).splitlines() if line.startswith("| evaluate |")]
    assert "blocking failures<br>predictive: precision_at_threshold" in row  # a table row stays one line


def test_the_summary_shows_steps_snapshot_beliefs_and_where_to_look() -> None:
    summary = NightlySummary(
        "brave-otter", "published", _completed(*STEPS), "/wh/warehouse.duckdb", "/wh/snapshots",
        report="/wh/report.html",
        snapshot={"version": "20260101T020000Z-abc", "content_hash": "abc", "published": True, "current": "v",
                  "data_as_of": AS_OF.isoformat()},
        beliefs=[{"family": "topic", "beliefs": 3, "users": 2, "enrichable": 1, "enrichable_users": 1,
                  "mean_confidence": 0.4}],
    )
    markdown = summary_markdown(summary)
    assert markdown.startswith("# Nightly run brave-otter: published snapshot `20260101T020000Z-abc`")
    assert markdown.count("| completed |") == 4
    assert "| topic | 3 | 2 | 1 | 1 | 0.4 |" in markdown
    assert "/wh/report.html" in markdown and "/wh/warehouse.duckdb" in markdown
