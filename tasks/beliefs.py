"""Prefect task wrapping a belief refresh (the work is in selfmodel.beliefs.refresh)."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from selfmodel.analyst import export_analyst_copy
from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.settings import load_settings
from warehouse.db import connect


@task(name="refresh-beliefs", retries=2, retry_delay_seconds=[10, 60],
      retry_condition_fn=lambda task, run, state: "in use by" in str(state.message or ""))
def refresh_beliefs_task(config_path: str | None, as_of: datetime | None = None, full: bool = False) -> dict:
    """Extract observations from new events and fold them into beliefs; log what changed."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
    try:
        report = refresh_beliefs(con, settings, as_of=as_of, full=full)
        export_analyst_copy(con, settings)  # analysts read this copy, never the live file
    finally:
        con.close()
    logger.info(
        "refresh %s (%s) as of %s: %d events -> %d observations; %d folded into %d groups; %d beliefs",
        report.refresh_id, report.mode, report.as_of, report.events_extracted, report.observations_extracted,
        report.observations_folded, report.groups_touched, report.beliefs_total,
    )
    return report.to_json()
