"""The `publish` flow: write-audit-publish of a belief snapshot, with the audit as an artifact."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from selfmodel.lock import run_writer_lock
from selfmodel.publish import AuditFailed
from selfmodel.settings import find_config_path, load_settings
from tasks.prefect_ui import snapshot_refused_event
from tasks.publish import publish_snapshot_task


@flow(name="publish")
def publish(config_path: str | None = None, tell_owners: bool = True, suites: list[str] | None = None) -> dict:
    """Publish an audited snapshot of the current beliefs for the online service (or keep the current one)."""
    # suites: the eval suites this run evaluated (the nightly run's `suites`); only they must be fresh.
    config_path = str(Path(find_config_path(config_path)).resolve())
    settings = load_settings(config_path)
    with run_writer_lock(settings, "publish flow run"):
        result = publish_snapshot_task(config_path, suites, tell_owners)
    create_table_artifact(
        key="snapshot-audit",
        table=result["checks"],
        description=(f"Snapshot {result['version']} published" if result["published"]
                     else f"Snapshot {result['version']} NOT published: {result['reason']}"),
    )
    if not result["published"]:
        # A failed run and the event are what the Prefect UI and automations notice; the reason is recorded.
        snapshot_refused_event(result)
        raise AuditFailed(f"snapshot audit failed, {result['current'] or 'no snapshot'} stays current: {result['reason']}")
    return result
