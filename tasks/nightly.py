"""Prefect tasks that close a nightly run (the work is in selfmodel.nightly)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from selfmodel.alerts import SuiteOutcome
from selfmodel.lock import run_connection
from selfmodel.nightly import belief_summary, latest_snapshot_audit, tell_owners
from selfmodel.settings import load_settings


@task(name="summarize-nightly", cache_policy=NO_CACHE)
def summarize_nightly_task(config_path: str) -> dict:
    """Read what the run left behind: beliefs per key family and the last snapshot attempt."""
    settings = load_settings(config_path)
    con = run_connection(settings, read_only=True)
    try:
        return {"beliefs": belief_summary(con, settings), "snapshot": latest_snapshot_audit(con)}
    finally:
        con.close()


@task(name="tell-nightly-owners", cache_policy=NO_CACHE)
def tell_owners_task(config_path: str, outcome: SuiteOutcome) -> list[dict]:
    """Alert the nightly owners once per incident, or send the recovery notice when the run is healthy again."""
    settings = load_settings(config_path)
    alerts = tell_owners(settings, outcome, wait_seconds=settings.nightly.lock_wait_seconds)
    for alert in alerts:
        get_run_logger().info("nightly %s alert to %s by %s: %s", alert.kind, alert.owner, alert.channel,
                              "delivered" if alert.delivered else f"undelivered ({alert.last_error})")
    return [alert.to_json() for alert in alerts]
