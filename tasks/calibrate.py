"""Prefect task wrapping a calibration (the work is in selfmodel.calibrate)."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from selfmodel.analyst import open_for_writing
from selfmodel.settings import load_settings
from tasks.retry import transient_failure


@task(name="calibrate", retries=1, retry_delay_seconds=[30], retry_condition_fn=transient_failure)
def calibrate_task(config_path: str, as_of: datetime | None = None, dry_run: bool = False) -> dict:
    """Fit the belief model per key family on past windows; adopt what improves validation log loss."""
    from selfmodel.calibrate import calibrate, calibration_table

    settings = load_settings(config_path)
    with open_for_writing(settings, wait=True) as con:
        report = calibrate(con, settings, as_of=as_of, dry_run=dry_run)
    logger = get_run_logger()
    if report.reason:
        logger.warning("calibration: nothing fitted: %s", report.reason)
    for line in calibration_table(report):
        logger.info("%s", line)
    return report.to_json()


@task(name="refold-beliefs", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=transient_failure)
def refold_task(config_path: str) -> dict:
    """Re-fold every belief with the calibration just adopted, at the as-of of the beliefs in force (an
    incremental refresh that finds the parameters changed); refresh the analyst copy."""
    from selfmodel.beliefs.read import last_refresh_as_of
    from selfmodel.beliefs.refresh import refresh_beliefs

    settings = load_settings(config_path)
    with open_for_writing(settings, wait=True) as con:
        # The refresh before it asked the LLM extractor's model already: a re-fold spends no second budget.
        report = refresh_beliefs(con, settings, as_of=last_refresh_as_of(con), ask_llm=False)
    get_run_logger().info("re-folded %d groups with calibration %s", report.groups_touched, report.calibration_id)
    return report.to_json()
