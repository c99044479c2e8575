"""Prefect task wrapping write-audit-publish of a belief snapshot (the work is in selfmodel.publish)."""

from __future__ import annotations

from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from selfmodel.nightly import tell_owners_of_refused_snapshot
from selfmodel.publish import publish
from selfmodel.settings import load_settings


@task(name="publish-snapshot", retries=2, retry_delay_seconds=[10, 60],
      retry_condition_fn=lambda task, run, state: "in use by" in str(state.message or ""))
def publish_snapshot_task(config_path: str | None, fresh_suites: list[str] | None = None) -> dict:
    """Write, audit and (if the audit passes) publish a snapshot of the current beliefs."""
    logger = get_run_logger()
    settings = load_settings(config_path)

    def on_audit_failure(reason: str) -> None:
        logger.error("snapshot audit failed, the current snapshot stays in service: %s", reason)

    result = publish(settings, on_audit_failure=on_audit_failure, fresh_suites=fresh_suites)
    if result.published:
        logger.info("published snapshot %s: %d beliefs of %d users", result.version, result.rows, result.users)
    return {**result.to_json(), "current": result.current, "rows": result.rows, "users": result.users,
            "data_as_of": result.data_as_of.isoformat() if result.data_as_of else None,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result.audit.checks]}


@task(name="tell-owners-of-refused-snapshot", cache_policy=NO_CACHE)
def tell_owners_of_refused_snapshot_task(config_path: str | None, result: dict) -> int:
    """Alert the nightly owners that the audit refused a snapshot (once per incident); return alerts sent."""
    context = FlowRunContext.get()
    where = f"publish flow run {context.flow_run.name}" if context and context.flow_run else "publish flow run"
    data_as_of = datetime.fromisoformat(result["data_as_of"]) if result.get("data_as_of") else None
    alerts = tell_owners_of_refused_snapshot(load_settings(config_path), result["version"], result["reason"],
                                             data_as_of, where)
    get_run_logger().info("nightly owners told of the refused snapshot: %d alert(s)", len(alerts))
    return len(alerts)
