"""Prefect task wrapping a belief refresh (the work is in selfmodel.beliefs.refresh)."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task

from selfmodel.analyst import open_for_writing
from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.lock import run_connection
from selfmodel.settings import load_settings
from tasks.prefect_ui import progress_artifact
from tasks.retry import transient_failure


@task(name="refresh-beliefs", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=transient_failure)
def refresh_beliefs_task(config_path: str | None, as_of: datetime | None = None, full: bool = False) -> dict:
    """Extract observations from new events and fold them into beliefs; log what changed."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    with open_for_writing(settings, wait=True) as con:
        with progress_artifact("Belief refresh") as progress:
            report = refresh_beliefs(con, settings, as_of=as_of, full=full, progress=progress)
    logger.info(
        "refresh %s (%s) as of %s: %d events -> %d observations; %d folded into %d groups; %d beliefs",
        report.refresh_id, report.mode, report.as_of, report.events_extracted, report.observations_extracted,
        report.observations_folded, report.groups_touched, report.beliefs_total,
    )
    return report.to_json()


@task(name="export-shards")
def export_shards_task(config_path: str, folder: str, shards: int, full: bool = False) -> dict:
    """Write the events to extract as one Parquet file per shard of users (hash of user_id)."""
    from pathlib import Path

    from selfmodel.beliefs.observe import export_shards

    settings = load_settings(config_path)
    con = run_connection(settings)
    try:
        plan = export_shards(con, settings, Path(folder), shards, everything=full)
    finally:
        con.close()
    get_run_logger().info("%d events of %d batches split into %d shards under %s", plan.events, len(plan.batches),
                          shards, folder)
    return {"batches": plan.batches, "events": plan.events, "event_files": plan.event_files}


@task(name="extract-shard", retries=2, retry_delay_seconds=[5, 30])
def extract_shard_task(config_path: str, events_file: str) -> str:
    """Run the extractors over one shard's events (no warehouse access: any worker can run it)."""
    from selfmodel.beliefs.observe import extract_shard

    settings = load_settings(config_path)
    observations_file = events_file.replace("events-shard-", "observations-shard-")
    count = extract_shard(settings, events_file, observations_file)
    get_run_logger().info("%s: %d observations", observations_file, count)
    return observations_file


@task(name="fold-shards")
def fold_shards_task(config_path: str, plan: dict, observation_files: list[str], as_of: datetime | None = None,
                     full: bool = False) -> dict:
    """Load the shards' observations and fold them into beliefs in one transaction (the single writer)."""
    from selfmodel.beliefs.observe import ShardPlan, load_shards

    settings = load_settings(config_path)
    shard_plan = ShardPlan(plan["batches"], plan["events"], plan["event_files"])
    with open_for_writing(settings, wait=True) as con:
        report = refresh_beliefs(con, settings, as_of=as_of, full=full,
                                 extraction=lambda c, s, now: load_shards(c, s, shard_plan, observation_files, now))
    get_run_logger().info("refresh %s (%s, %d shards) as of %s: %d observations folded into %d groups; %d beliefs",
                          report.refresh_id, report.mode, len(observation_files), report.as_of,
                          report.observations_folded, report.groups_touched, report.beliefs_total)
    return report.to_json()
