"""The `nightly` flow: ingest -> refresh_beliefs -> [calibrate] -> evaluate -> publish, as the warehouse's only
writer (calibrate when calibration.nightly is on; what it adopts is re-folded before the evaluation).

Each step is the existing flow of that name, run as a subflow, so the Prefect UI shows every step with
its own tasks, logs and artifacts under the nightly run. Order and failure rules are in selfmodel.nightly:
a failed step stops the steps after it and fails the run (the `on_failure` hook tells the nightly owners
what failed); a snapshot refused by its audit is recorded, not a failure. The whole run holds the
warehouse's writer lock (selfmodel.lock): a second run started meanwhile exits cleanly ("Skipped"), and
so does a run that finds the warehouse file held open by another process (a DuckDB shell, a notebook) at
its start, between its steps or in one of them, after waiting `nightly.lock_wait_seconds` for it.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.states import Completed, State

from flows.calibrate import calibrate
from flows.evaluate import evaluate
from flows.ingest import ingest
from flows.publish import AuditFailed, publish
from flows.refresh_beliefs import refresh_beliefs
from selfmodel.beliefs.refresh import refuse_future_as_of
from selfmodel.lock import run_writer_lock, writer_lock
from selfmodel.nightly import (
    NightlySummary, StepFailed, StepResult, calibrate_step, evaluate_step, failure_outcome, ingest_step,
    nightly_steps, not_run_after, publish_step, refresh_step, run_outcome, steps_table, summary_markdown, tell_owners,
)
from selfmodel.quality import data_docs_folder
from selfmodel.settings import Settings, find_config_path, load_settings
from tasks.nightly import summarize_nightly_task, tell_owners_task
from warehouse.db import WarehouseBusyError, wait_until_free

# How long the failure hook waits for the writer lock (another run may have taken it) to record its alert.
HOOK_LOCK_WAIT_SECONDS = 120


def tell_owners_of_failure(flow, flow_run, state: State) -> None:
    """on_failure / on_crashed hook: tell the nightly owners which step failed and how to look into it."""
    from prefect.logging.loggers import flow_run_logger

    logger = flow_run_logger(flow_run, flow)
    try:
        error = state.result(raise_on_failure=False)
    except Exception as exc:  # the result may be gone (a crash); the state's message still says what happened
        error = exc
    if isinstance(error, StepFailed):
        step, reason, steps = error.step, error.reason, error.steps
    else:
        step, reason, steps = None, state.message or type(error).__name__, []
    outcome = failure_outcome(str(flow_run.id), flow_run.name, step, reason, steps)
    try:
        settings = load_settings(_config_path(flow_run.parameters.get("config_path")))
        wait_seconds = max(HOOK_LOCK_WAIT_SECONDS, settings.nightly.lock_wait_seconds)
        with writer_lock(settings.warehouse_path, what=f"alerting for nightly flow run {flow_run.name}",
                         wait_seconds=wait_seconds):
            alerts = tell_owners(settings, outcome, wait_seconds=wait_seconds)
    except Exception as exc:  # nothing more to fall back on: the failed run itself is what the UI shows
        logger.error("the nightly owners could not be told that %s failed: %s: %s", step or "the run",
                     type(exc).__name__, exc)
        return
    logger.info("nightly owners told that %s failed: %d alert(s) recorded", step or "the run", len(alerts))


def _config_path(config_path: str | None) -> str:
    # Absolute, so subflows and tasks (on any worker process) read the same file.
    return str(Path(find_config_path(config_path)).resolve())


def _run_name() -> tuple[str, str]:
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return (str(run.id), run.name) if run else ("local", "local")


@flow(name="nightly", timeout_seconds=6 * 3600, on_failure=[tell_owners_of_failure],
      on_crashed=[tell_owners_of_failure])
def nightly(config_path: str | None = None, as_of: datetime | None = None,
            suites: list[str] | None = None) -> dict[str, Any]:
    """Ingest, refresh beliefs, evaluate and publish a snapshot, in order, as the warehouse's only writer."""
    config_path = _config_path(config_path)
    settings = load_settings(config_path)
    # A deployment's as_of from the future is a typo: refused before ingest writes anything (the run fails,
    # naming it), as `selfmodel nightly --as-of` refuses it before Prefect starts.
    refuse_future_as_of(as_of, settings)
    run_id, run_name = _run_name()
    steps: list[StepResult] = []  # filled by _run_steps, step by step
    try:
        with run_writer_lock(settings, f"nightly flow run {run_name}"):
            summary = _run_steps(config_path, settings, as_of, suites, run_id, run_name, steps)
    except WarehouseBusyError as busy:  # the writer lock, or the warehouse file held open by another process
        get_run_logger().warning("%s", busy)
        summary = NightlySummary(run_name, "skipped", steps, str(settings.warehouse_path),
                                 str(settings.snapshots_path), reason=str(busy))
        _publish_summary(summary)
        # Completed, not Failed: nothing broke, another process has the warehouse (no alert, no retry).
        return Completed(name="Skipped", message=str(busy), data={**summary.to_json(), "holder": busy.holder})
    return summary.to_json()


def _run_steps(config_path: str, settings: Settings, as_of: datetime | None, suites: list[str] | None,
               run_id: str, run_name: str, steps: list[StepResult]) -> NightlySummary:
    logger = get_run_logger()
    summary = NightlySummary(run_name, "failed", steps, str(settings.warehouse_path), str(settings.snapshots_path),
                             analyst_copy=str(settings.analyst_copy_path) if settings.analyst_copy_path else None)

    order = nightly_steps(settings)

    def step(name: str, call: Callable[[], State], describe: Callable[[Any, float], StepResult]) -> Any:
        started = time.perf_counter()
        try:
            # Between two steps another process (a DuckDB shell) may have opened the warehouse: wait for it
            # here, where a busy warehouse skips the run, rather than fail the step's first task.
            wait_until_free(settings.warehouse_path, settings.nightly.lock_wait_seconds)
        except WarehouseBusyError as busy:
            steps.append(StepResult(name, "busy", time.perf_counter() - started, detail=str(busy)))
            steps.extend(not_run_after(name, order))
            raise
        # Subflows run in this process, whose own run already sends heartbeats; a subflow's heartbeat
        # thread would only add about a second per step while it is joined at the end.
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            state = call()
        seconds = time.perf_counter() - started
        result = state.result(raise_on_failure=False)
        if isinstance(result, WarehouseBusyError):
            # One of the step's tasks found the warehouse held open for longer than the run waits.
            steps.append(StepResult(name, "busy", seconds, detail=str(result)))
            steps.extend(not_run_after(name, order))
            raise result
        if name == "publish" and isinstance(result, AuditFailed):
            # A refused snapshot is an outcome, not a failure: the publish subflow recorded why.
            steps.append(StepResult(name, "refused", seconds, rows_out=0, detail=str(result)))
            logger.warning("publish refused in %.1f s: %s", seconds, result)
            return None
        if not state.is_completed():
            steps.append(StepResult(name, "failed", seconds, detail=state.message or ""))
            steps.extend(not_run_after(name, order))
            summary.reason = f"{name} failed: {state.message}"
            _publish_summary(summary)
            raise StepFailed(name, state.message or state.name, steps)
        done = describe(result, seconds)
        steps.append(done)
        counts = ", ".join(f"{value:,} {label}" for label, value in (("rows in", done.rows_in), ("out", done.rows_out),
                                                                       ("quarantined", done.quarantined))
                           if value is not None)
        logger.info("%s %s in %.1f s: %s; %s", name, done.status, seconds, counts or "no rows", done.detail)
        return result

    step("ingest", lambda: ingest(config_path=config_path, return_state=True), ingest_step)
    refreshed = step("refresh_beliefs", lambda: refresh_beliefs(config_path=config_path, as_of=as_of,
                                                                 return_state=True), refresh_step)
    if "calibrate" in order:
        step("calibrate", lambda: calibrate(config_path=config_path, as_of=as_of, refold=True, return_state=True),
             calibrate_step)
    # One run, one LLM budget: what the refresh's LLM extractor spent is not the enrichment judge's to spend again.
    llm_spent_usd = float((refreshed.get("llm") or {}).get("cost_usd") or 0.0)
    evaluated = step("evaluate", lambda: evaluate(config_path=config_path, suites=suites, as_of=as_of,
                                                  llm_spent_usd=llm_spent_usd, return_state=True),
                     evaluate_step)
    step("publish", lambda: publish(config_path=config_path, tell_owners=False, suites=suites, return_state=True),
         publish_step)

    closing = summarize_nightly_task(config_path)
    data_as_of = datetime.fromisoformat(refreshed["as_of"]) if refreshed.get("as_of") else None
    published = steps[-1].status == "completed"
    summary.status = "published" if published else "not_published"
    summary.report = evaluated.get("report")
    summary.data_docs = str(data_docs_folder(settings) / "index.html")
    summary.beliefs = closing["beliefs"]
    audit = closing["snapshot"]
    summary.snapshot = {
        "version": audit.get("version"), "content_hash": audit.get("content_hash"),
        "published": bool(audit.get("published")), "reason": audit.get("reason"),
        "current": _current_snapshot(settings),
        "data_as_of": audit["data_as_of"].isoformat() if audit.get("data_as_of") else None,
    }
    if not published:
        summary.reason = f"snapshot not published: {audit.get('reason') or steps[-1].detail}"
    summary.alerts = tell_owners_task(config_path, run_outcome(run_id, run_name, steps, data_as_of))
    _publish_summary(summary)
    return summary


def _current_snapshot(settings: Settings) -> str | None:
    from warehouse.online import read_current

    return read_current(settings.snapshots_path) if settings.snapshots_path.is_dir() else None


def _publish_summary(summary: NightlySummary) -> None:
    """The nightly-summary artifacts: steps with rows in/out/quarantined, snapshot, beliefs, where to look."""
    if summary.steps:
        create_table_artifact(key="nightly-steps", table=steps_table(summary.steps),
                              description=f"Nightly run {summary.run_name}: {summary.status}")
    if summary.beliefs:
        create_table_artifact(key="belief-summary", table=summary.beliefs,
                              description="Beliefs in force per key family, decayed to the data as-of")
    create_markdown_artifact(key="nightly-summary", markdown=summary_markdown(summary),
                             description=f"Nightly run {summary.run_name}: {summary.status}")


def nightly_deployment(config_path: str, cron: str, timezone: str, name: str = "nightly"):
    """The nightly flow as a deployment served by this process (`selfmodel serve`), on a cron schedule."""
    from prefect.schedules import Cron

    return nightly.to_deployment(
        name=name,
        schedules=[Cron(cron, timezone=timezone)],
        parameters={"config_path": config_path},
        tags=["selfmodel", "nightly"],
        description="Ingest, refresh beliefs, evaluate and publish a snapshot every night (served by `selfmodel serve`).",
    )
