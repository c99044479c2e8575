"""Prefect tasks for the nightly evaluation (the work is in selfmodel.quality and selfmodel.evals)."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from selfmodel.analyst import open_for_writing
from selfmodel.lock import run_connection
from selfmodel.settings import load_settings
from tasks.prefect_ui import progress_artifact
from tasks.retry import transient_failure


@task(name="validate-data", retries=1, retry_delay_seconds=[30], retry_condition_fn=transient_failure)
def validate_data_task(config_path: str) -> list[dict]:
    """Run the Great Expectations suites over new batches, beliefs and eval inputs; store the results."""
    from selfmodel.quality import validate

    settings = load_settings(config_path)
    # The evaluate flow's eval step, which always follows in the same run, refreshes the analyst copy.
    with open_for_writing(settings, wait=True, analyst_copy=False) as con:
        reports = validate(con, settings)
    # Each suite's figures reach the run log from selfmodel.quality's own line (flows attach selfmodel.* logs).
    return [report.to_json() for report in reports]


@task(name="run-evals")
def run_evals_task(config_path: str, suites: list[str] | None = None, as_of: datetime | None = None,
                   llm_spent_usd: float = 0.0) -> list[dict]:
    """Run the eval suites against the success bar and the last passing run; alert owners on incidents.
    `llm_spent_usd`: what the run's earlier steps spent on the language model; the enrichment judge gets the
    rest of llm.max_cost_usd_per_run (one nightly run, one budget)."""
    from selfmodel.evals.notify import owner_alert_hook
    from selfmodel.evals.run import run_evals

    settings = load_settings(config_path)
    budget = None
    if settings.llm is not None and llm_spent_usd:
        from selfmodel.llm.budget import Budget

        budget = Budget.from_settings(settings.llm, already_spent_usd=llm_spent_usd)
    with open_for_writing(settings, wait=True) as con:
        with progress_artifact("Eval suites") as progress:
            runs = run_evals(con, settings, suites, notify=owner_alert_hook(settings), as_of=as_of, budget=budget,
                             progress=progress)
    logger = get_run_logger()
    for suite_run in runs:
        if suite_run.skipped:
            logger.info("eval %s skipped: %s", suite_run.suite, suite_run.skipped)
        else:
            logger.info("eval %s %s: %s", suite_run.suite, "passed" if suite_run.passed else "FAILED",
                        {k: v for k, v in suite_run.metrics.items() if k in suite_run.bar})
    return [suite_run.to_json() for suite_run in runs]


@task(name="write-report")
def write_report_task(config_path: str) -> str:
    """Write the HTML eval report next to the warehouse and return its markdown summary."""
    from selfmodel.clock import SystemClock
    from selfmodel.evals.report import write_report

    settings = load_settings(config_path)
    con = run_connection(settings, read_only=True)
    try:
        path = write_report(con, settings.warehouse_path.parent / "report.html", SystemClock().now())
    finally:
        con.close()
    return str(path)
