"""Prefect task wrapping write-audit-publish of a belief snapshot (the work is in selfmodel.publish)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.context import FlowRunContext

from selfmodel.analyst import open_for_writing
from selfmodel.nightly import refused_snapshot_hook
from selfmodel.publish import publish
from selfmodel.settings import load_settings
from tasks.retry import transient_failure


@task(name="publish-snapshot", retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=transient_failure)
def publish_snapshot_task(config_path: str | None, fresh_suites: list[str] | None = None,
                          tell_owners: bool = True) -> dict:
    """Write, audit and (if the audit passes) publish a snapshot of the current beliefs."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    context = FlowRunContext.get()
    alert_owners = refused_snapshot_hook(settings, f"publish flow run {context.flow_run.name}"
                                         if context and context.flow_run else "publish flow run")

    def on_audit_failure(reason: str) -> None:
        logger.error("snapshot audit failed, the current snapshot stays in service: %s", reason)
        if tell_owners:  # the nightly run tells its owners itself, once
            alert_owners(reason)

    # Waits, as the run did, while another process has the warehouse open.
    with open_for_writing(settings, wait=True) as con:
        result = publish(settings, con=con, on_audit_failure=on_audit_failure, fresh_suites=fresh_suites)
    if result.alert_error:
        logger.error("the nightly owners could not be told of the refused snapshot: %s", result.alert_error)
    return {**result.to_json(), "current": result.current, "rows": result.rows, "users": result.users,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result.audit.checks]}

