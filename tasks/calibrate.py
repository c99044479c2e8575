"""Prefect task wrapping a calibration (the work is in selfmodel.calibrate)."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from selfmodel.lock import run_connection
from selfmodel.settings import load_settings
from tasks.retry import io_error_may_pass


@task(name="calibrate", retries=1, retry_delay_seconds=[30], retry_condition_fn=io_error_may_pass)
def calibrate_task(config_path: str, as_of: datetime | None = None, dry_run: bool = False) -> dict:
    """Fit the belief model per key family on past windows; adopt what improves validation log loss."""
    from selfmodel.calibrate import calibrate, calibration_table

    settings = load_settings(config_path)
    con = run_connection(settings)
    try:
        report = calibrate(con, settings, as_of=as_of, dry_run=dry_run)
    finally:
        con.close()
    logger = get_run_logger()
    if report.reason:
        logger.warning("calibration: nothing fitted: %s", report.reason)
    for line in calibration_table(report):
        logger.info("%s", line)
    return report.to_json()
