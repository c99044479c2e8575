"""Prefect task wrapping write-audit-publish of a belief snapshot (the work is in selfmodel.publish)."""

from __future__ import annotations

from prefect import get_run_logger, task

from selfmodel.publish import publish
from selfmodel.settings import load_settings


@task(name="publish-snapshot", retries=2, retry_delay_seconds=[10, 60],
      retry_condition_fn=lambda task, run, state: "in use by" in str(state.message or ""))
def publish_snapshot_task(config_path: str | None) -> dict:
    """Write, audit and (if the audit passes) publish a snapshot of the current beliefs."""
    logger = get_run_logger()
    settings = load_settings(config_path)

    def on_audit_failure(reason: str) -> None:
        logger.error("snapshot audit failed, the current snapshot stays in service: %s", reason)

    result = publish(settings, on_audit_failure=on_audit_failure)
    if result.published:
        logger.info("published snapshot %s: %d beliefs of %d users", result.version, result.rows, result.users)
    return {**result.to_json(), "current": result.current, "rows": result.rows, "users": result.users,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result.audit.checks]}
