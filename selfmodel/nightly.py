"""The nightly run's plain logic: its steps, what each did, what the owners hear, the run summary.

flows/nightly.py wires the steps (the ingest, refresh_beliefs, evaluate and publish flows) in order and
calls this module; nothing here imports Prefect.

The steps form a chain, each needing the one before: beliefs from a partly failed ingest would be
published as if complete, and a snapshot without a fresh evaluation would not pass its audit anyway. So a
failed step stops every step after it. A publish whose audit refuses the snapshot is not a failure of
the run: the refusal is recorded (`snapshot_audits`), the current snapshot stays in service, and the
run's outcome says so. The nightly owners (`alerts.owners.nightly`) hear about both — a failed step and a
refused snapshot — once per incident, through selfmodel.alerts, and get a recovery notice after the
next run that publishes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import duckdb

from selfmodel.alerts import AlertRecord, MetricChange, SuiteOutcome, WorstCase, notify
from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import Settings
from warehouse.db import connect, run_dicts

SUITE = "nightly"  # owners under alerts.owners.nightly
STEPS = ("ingest", "refresh_beliefs", "evaluate", "publish")
# With calibration.nightly on, calibrate runs after the refresh (it fits on the observations the refresh extracted)
# and, when it adopts, re-folds the beliefs at once: what is evaluated and published is what it adopted.
STEPS_WITH_CALIBRATION = ("ingest", "refresh_beliefs", "calibrate", "evaluate", "publish")


def nightly_steps(settings: Settings) -> tuple[str, ...]:
    return STEPS_WITH_CALIBRATION if settings.calibration.nightly else STEPS

# Where an owner looks first when a step fails: SQL against the warehouse.
REPRODUCE_SQL = {
    "ingest": ("select batch_id, source, started_at, error from ingest_batches\n"
               "where status = 'failed' order by started_at desc limit 5;"),
    "calibrate": ("-- a failed calibration writes nothing: the newest row is the calibration in force\n"
                  "select adopted_at, calibration_id, reason from calibration_adoptions\n"
                  "order by adopted_at desc limit 5;"),
    "refresh_beliefs": ("-- a failed refresh rolls back and leaves no row: the newest row is what is in force\n"
                        "select refresh_id, as_of, mode, ended_at, observations_folded, beliefs_total\n"
                        "from refresh_runs order by started_at desc limit 5;"),
    "evaluate": ("select suite, asset, validated_at, blocking_failures, data_docs from expectation_runs\n"
                 "order by validated_at desc limit 10;\n"
                 "select suite, ended_at, passed from eval_runs order by ended_at desc limit 10;"),
    "publish": ("select attempted_at, version, published, reason from snapshot_audits\n"
                "order by attempted_at desc limit 5;"),
}
# A failure outside any step (a bad config, the run's own time limit): the last thing each step recorded.
REPRODUCE_SQL_ANY = ("select 'ingest' as step, max(started_at) as last from ingest_batches\n"
                     "union all select 'refresh_beliefs', max(started_at) from refresh_runs\n"
                     "union all select 'evaluate', max(ended_at) from eval_runs\n"
                     "union all select 'publish', max(attempted_at) from snapshot_audits;")


@dataclass
class StepResult:
    """What one step of a nightly run did; `status` is completed, failed, refused (publish), busy (another
    process held the warehouse: the run was skipped) or not_run."""

    step: str
    status: str
    seconds: float | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    quarantined: int | None = None
    detail: str = ""

    def to_json(self) -> dict:
        return asdict(self)


class StepFailed(RuntimeError):
    """A step of the nightly run failed; the steps after it did not run."""

    def __init__(self, step: str, message: str, steps: list[StepResult]) -> None:
        super().__init__(f"nightly step {step} failed: {message}")
        self.step = step
        self.reason = message
        self.steps = steps


def not_run_after(step: str, order: tuple[str, ...] = STEPS) -> list[StepResult]:
    """The steps after `step`, each marked not run because it needs the one before."""
    later = order[order.index(step) + 1:]
    needed = (step,) + later[:-1]
    return [StepResult(name, "not_run", detail=f"not run: needs {before}") for name, before in zip(later, needed)]


# --- what each step did, from the subflows' return values ------------------------------------------------

def ingest_step(reports: list[dict], seconds: float) -> StepResult:
    """Rows read in, loaded, quarantined, over every source's batch."""
    return StepResult(
        "ingest", "completed", seconds,
        rows_in=sum(r["rows_read"] for r in reports), rows_out=sum(r["loaded"] for r in reports),
        quarantined=sum(r["quarantined"] for r in reports),
        detail=", ".join(f"{r['source']}: {r['loaded']:,} loaded, {r['duplicates']:,} duplicates" for r in reports),
    )


def calibrate_step(report: dict, seconds: float) -> StepResult:
    """Key families judged in, families adopted out; which were adopted, or why nothing was fitted."""
    families = report.get("families", [])
    adopted = [f["family"] for f in families if f["status"] == "adopted"]
    if report.get("reason"):
        detail = f"nothing fitted: {report['reason']}"
    elif adopted:
        refold = report.get("refresh") or {}
        detail = (f"adopted {report['calibration_id']} for {', '.join(adopted)}"
                  + (f"; beliefs re-folded into {refold.get('groups_touched', 0):,} groups" if refold else ""))
    else:
        detail = f"recorded {report.get('calibration_id')}; no family's validation log loss improved"
    return StepResult("calibrate", "completed", seconds,
                      rows_in=sum(f.get("judged_train", 0) + f.get("judged_validation", 0) for f in families),
                      rows_out=len(adopted), detail=detail)


def refresh_step(report: dict, seconds: float) -> StepResult:
    """Events extracted in, observations out; what was folded into how many beliefs; with the LLM extractor on,
    its requests, tokens and estimated cost (and whether the budget stopped it)."""
    detail = (f"{report.get('mode')} as of {report.get('as_of')}: {report.get('observations_folded', 0):,} "
              f"observations folded into {report.get('groups_touched', 0):,} groups; "
              f"{report.get('beliefs_total', 0):,} beliefs")
    if report.get("llm") and "requests" in report["llm"]:
        from selfmodel.llm.extraction import summary_line

        detail += "\n" + summary_line(report["llm"])
    return StepResult(
        "refresh_beliefs", "completed", seconds,
        rows_in=report.get("events_extracted"), rows_out=report.get("observations_extracted"), detail=detail,
    )


def evaluate_step(result: dict, seconds: float) -> StepResult:
    """Rows validated in, suites passed out; the verdicts, blocking expectation failures and, per suite, each
    metric of the bar beside its threshold (one line each: what the owner reads first)."""
    runs = [r for r in result["runs"] if not r.get("skipped")]
    blocking = sum(v.get("blocking_failures", 0) for v in result["validations"])
    verdicts = ", ".join(f"{r['suite']} {'passed' if r['passed'] else 'FAILED'}" for r in runs) or "no suite ran"
    lines = [f"{verdicts}; {len(result['validations'])} validations, {blocking} blocking failures"]
    for run in runs:
        bar = run.get("bar") or {}
        # the per-family checks are in the table below, one row per family
        measured = ", ".join(bar_line(metric, verdict) for metric, verdict in bar.items() if "family" not in verdict)
        regressions = f"; {len(run['regressions'])} regression(s)" if run.get("regressions") else ""
        lines.append(f"    {run['suite']}: {measured or 'no bar'}{regressions}")
        if run.get("details", {}).get("per_key"):
            from selfmodel.evals.report import per_key_table_lines

            lines += [f"      {line}" for line in per_key_table_lines(run["details"]["per_key"], bar, compact=True)]
    return StepResult(
        "evaluate", "completed", seconds,
        rows_in=sum(v.get("rows", 0) for v in result["validations"]),
        rows_out=sum(1 for r in runs if r["passed"]),
        detail="\n".join(lines),
    )


def bar_line(metric: str, verdict: dict) -> str:
    """`precision_at_threshold 0.797 (>= 0.75)`, with FAILED when the bar is not met (n/a when unmeasured)."""
    value = verdict.get("value")
    shown = "n/a" if value is None else f"{value:.3g}"
    failed = "" if verdict.get("passed") else (" too small to judge" if verdict.get("status") == "too_small"
                                               else " FAILED")
    return f"{metric} {shown} ({verdict.get('op')} {verdict.get('threshold')}){failed}"


def publish_step(result: dict, seconds: float) -> StepResult:
    """Beliefs written out (published or refused by the audit)."""
    if result["published"]:
        return StepResult("publish", "completed", seconds, rows_in=result.get("rows"), rows_out=result.get("rows"),
                          detail=f"published {result['version']} ({result.get('users', 0):,} users)")
    return StepResult("publish", "refused", seconds, rows_in=result.get("rows"), rows_out=0,
                      detail=f"audit refused {result['version']}: {result['reason']}; "
                             f"{result.get('current') or 'no snapshot'} stays current")


# --- what the owners hear ------------------------------------------------------------------------------------

def _step_metrics(steps: list[StepResult]) -> dict[str, float | None]:
    """1 per step that completed, 0 per step that failed (or a refused publish), None per step not run."""
    status = {step.step: step.status for step in steps}
    metrics: dict[str, float | None] = {}
    for name in STEPS:
        state = status.get(name, "not_run")
        metrics[f"{name}_completed"] = None if state == "not_run" else float(state == "completed")
    return metrics


def failure_outcome(run_id: str, run_name: str, step: str | None, reason: str, steps: list[StepResult],
                    data_as_of: datetime | None = None) -> SuiteOutcome:
    """A failed nightly run (`step` None: it failed outside any step) as an alert for the nightly owners."""
    metric = f"{step}_completed" if step else "run_completed"
    cases = [WorstCase(step or "nightly", f"failed: {reason}")]
    cases += [WorstCase(s.step, s.detail) for s in steps if s.status == "not_run"]
    cases.append(WorstCase("flow run", f"{run_name} ({run_id}): prefect flow-run inspect {run_id}"))
    return SuiteOutcome(
        run_id=run_id,
        bar_failures=(MetricChange(metric=metric, after=0, threshold="== 1"),),
        worst_cases=cases,
        reproduce_sql=REPRODUCE_SQL.get(step or "", REPRODUCE_SQL_ANY),
        metrics=_step_metrics(steps),
        data_as_of=data_as_of,
    )


def run_outcome(run_id: str, run_name: str, steps: list[StepResult], data_as_of: datetime | None) -> SuiteOutcome:
    """A nightly run whose steps all ran: healthy when it published, an incident when the audit refused."""
    publish = next(s for s in steps if s.step == "publish")
    if publish.status == "completed":
        return SuiteOutcome(run_id=run_id, metrics=_step_metrics(steps), data_as_of=data_as_of)
    return refused_snapshot_outcome(
        run_id, publish.detail, f"{run_name} ({run_id}): prefect flow-run inspect {run_id}", data_as_of,
        metrics=_step_metrics(steps))


def refused_snapshot_outcome(run_id: str, reason: str, where: str, data_as_of: datetime | None,
                             metrics: dict[str, float | None] | None = None) -> SuiteOutcome:
    """A snapshot the audit refused (in a nightly run or a publish on its own), as an alert for the nightly owners."""
    return SuiteOutcome(
        run_id=run_id,
        bar_failures=(MetricChange(metric="snapshot_published", after=0, threshold="== 1"),),
        worst_cases=[WorstCase("publish", reason), WorstCase("run", where)],
        reproduce_sql=REPRODUCE_SQL["publish"],
        metrics=metrics or {"snapshot_published": 0},
        data_as_of=data_as_of,
    )


def refused_snapshot_hook(settings: Settings, where: str, clock: Clock | None = None) -> Callable[[str], None]:
    """An `on_audit_failure` hook for selfmodel.publish: a publish on its own (CLI, flow, deployment) that
    the audit refused reaches the nightly owners too, once per incident."""
    clock = clock or SystemClock()

    def hook(reason: str) -> None:
        run_id = f"publish-{clock.now().astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"
        tell_owners(settings, refused_snapshot_outcome(run_id, reason, where, None), clock)

    return hook


def tell_owners(settings: Settings, outcome: SuiteOutcome, clock: Clock | None = None,
                wait_seconds: float = 0.0) -> list[AlertRecord]:
    """Alert the nightly owners (once per incident; a recovery notice when a run is healthy again).

    `wait_seconds`: how long to wait while another process has the warehouse file open."""
    con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit, wait_seconds=wait_seconds)
    try:
        return notify(con, settings, SUITE, outcome, clock)
    finally:
        con.close()


# --- the run summary -------------------------------------------------------------------------------------------

@dataclass
class NightlySummary:
    """What `selfmodel nightly` prints and the `nightly-summary` artifact shows."""

    run_name: str
    status: str  # published | not_published | failed | skipped
    steps: list[StepResult]
    warehouse: str
    snapshots: str
    report: str | None = None
    data_docs: str | None = None
    analyst_copy: str | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)  # version, content_hash, published, current, reason
    beliefs: list[dict] = field(default_factory=list)  # per key family
    alerts: list[dict] = field(default_factory=list)
    reason: str | None = None

    def to_json(self) -> dict:
        return {**asdict(self), "steps": [s.to_json() for s in self.steps]}


def belief_summary(con: duckdb.DuckDBPyConnection, settings: Settings) -> list[dict]:
    """Beliefs per key family, decayed to the last refresh's as-of exactly as a snapshot holds them."""
    from warehouse.db import load_sql

    refresh = run_dicts(con, "last_refresh_run")
    if not refresh:
        return []
    decayed = con.sql(load_sql("snapshot_beliefs"), params={"min_confidence": 0.0}).to_arrow_table()
    con.register("decayed_beliefs", decayed)
    try:
        return run_dicts(con, "nightly_belief_summary", {"threshold": settings.beliefs.serving_threshold})
    finally:
        con.unregister("decayed_beliefs")


def latest_snapshot_audit(con: duckdb.DuckDBPyConnection) -> dict:
    """The last publish attempt: version, content hash, published or why not."""
    rows = run_dicts(con, "latest_snapshot_audit")
    return rows[0] if rows else {}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    # A markdown table row is one line: a multi-line detail (the evaluate step's) joins with <br>.
    return "<br>".join(line.strip() for line in str(value).splitlines()).replace("|", "\\|")


def steps_table(steps: list[StepResult]) -> list[dict]:
    """The steps as rows of a table artifact."""
    return [{"step": s.step, "result": s.status, "seconds": round(s.seconds, 2) if s.seconds is not None else None,
             "rows in": s.rows_in, "rows out": s.rows_out, "quarantined": s.quarantined, "detail": s.detail}
            for s in steps]


def summary_markdown(summary: NightlySummary) -> str:
    """The nightly-summary artifact: the steps, the snapshot, the beliefs, and where to look."""
    snapshot = summary.snapshot
    headline = {
        "published": f"published snapshot `{snapshot.get('version')}`",
        "not_published": f"snapshot NOT published ({snapshot.get('current') or 'no snapshot'} stays current)",
        "failed": "FAILED",
        "skipped": "skipped",
    }[summary.status]
    lines = [f"# Nightly run {summary.run_name}: {headline}", ""]
    if summary.reason:
        lines += [f"**{summary.reason}**", ""]
    lines += ["| step | result | seconds | rows in | rows out | quarantined | detail |",
              "|---|---|---:|---:|---:|---:|---|"]
    lines += [f"| {s.step} | {s.status} | {_cell(s.seconds)} | {_cell(s.rows_in)} | {_cell(s.rows_out)} | "
              f"{_cell(s.quarantined)} | {_cell(s.detail)} |" for s in summary.steps]
    if snapshot:
        lines += ["", "## Snapshot", "",
                  f"- version: `{snapshot.get('version')}`, content hash `{snapshot.get('content_hash')}`",
                  f"- published: {'yes' if snapshot.get('published') else 'no'}"
                  + (f" ({snapshot.get('reason')})" if snapshot.get("reason") else ""),
                  f"- in service: `{snapshot.get('current')}`, data as of {snapshot.get('data_as_of')}"]
    if summary.beliefs:
        lines += ["", "## Beliefs in force", "", "| key family | beliefs | users | enrichable | enrichable users | mean confidence |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {b['family']} | {b['beliefs']:,} | {b['users']:,} | {b['enrichable']:,} | "
                  f"{b['enrichable_users']:,} | {b['mean_confidence']} |" for b in summary.beliefs]
    lines += ["", "## Where to look", "", f"- warehouse: `{summary.warehouse}`"]
    if summary.analyst_copy:
        lines.append(f"- analysts' read-only copy: `{summary.analyst_copy}`")
    lines.append(f"- snapshots: `{summary.snapshots}`")
    if summary.report:
        lines.append(f"- eval report: `{summary.report}`")
    if summary.data_docs:
        lines.append(f"- data docs: `{summary.data_docs}`")
    if summary.alerts:
        lines += ["", f"Alerts to the nightly owners: {len(summary.alerts)} "
                  + ", ".join(f"{a['kind']} to {a['owner']} by {a['channel']}"
                              + ("" if a.get("delivered_at") else " (undelivered)") for a in summary.alerts)]
    return "\n".join(lines) + "\n"
