"""The `backfill` flow: rebuild belief history night by night over a range (selfmodel.beliefs.backfill).

It holds the warehouse's writer lock for the whole range, as the nightly run does, so a scheduled night
waits or skips rather than interleaving with it; each night is logged and the nights make one table
artifact. No snapshot is published for past nights.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from selfmodel.analyst import open_for_writing
from selfmodel.beliefs.backfill import backfill_beliefs
from selfmodel.lock import run_writer_lock
from selfmodel.settings import find_config_path, load_settings

NIGHT_COLUMNS = ("as_of", "mode", "events_extracted", "observations_folded", "groups_touched", "beliefs_total")


@task(name="backfill-beliefs", cache_policy=NO_CACHE)
def backfill_beliefs_task(config_path: str, start: datetime, end: datetime, every_days: float) -> dict:
    logger = get_run_logger()
    settings = load_settings(config_path)
    with open_for_writing(settings, wait=True) as con:
        report = backfill_beliefs(
            con, settings, start, end, timedelta(days=every_days),
            on_night=lambda night: logger.info("night %s (%s): %d observations folded into %d groups; %d beliefs",
                                               night.as_of.isoformat(), night.mode, night.observations_folded,
                                               night.groups_touched, night.beliefs_total))
    return report.to_json()


@flow(name="backfill")
def backfill(start: datetime, end: datetime, every_days: float = 1.0, config_path: str | None = None) -> dict:
    """Refresh beliefs as of every night from start to end (every_days apart), as nightly runs would have."""
    config_path = str(Path(find_config_path(config_path)).resolve())
    settings = load_settings(config_path)
    with run_writer_lock(settings, "backfill flow run"):
        report = backfill_beliefs_task(config_path, start, end, every_days)
    create_table_artifact(
        key="belief-backfill",
        table=[{name: night[name] for name in NIGHT_COLUMNS} for night in report["nights"]],
        description=f"Belief backfill {report['start']} .. {report['end']}"
                    + (f"; caught up to {report['caught_up_to']}" if report["caught_up_to"] else ""),
    )
    return report
