"""The `refresh_beliefs` flow: new events -> observations -> beliefs, with a summary artifact."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from selfmodel.settings import find_config_path
from tasks.beliefs import refresh_beliefs_task


@flow(name="refresh_beliefs")
def refresh_beliefs(config_path: str | None = None, as_of: datetime | None = None, full: bool = False) -> dict:
    """Refresh per-user beliefs from new evidence (incremental unless full), as of a time."""
    config_path = str(Path(find_config_path(config_path)).resolve())
    report = refresh_beliefs_task(config_path, as_of, full)
    create_table_artifact(
        key="belief-refresh",
        table=[{name: report[name] for name in ("refresh_id", "mode", "as_of", "events_extracted",
                                                 "observations_extracted", "observations_folded",
                                                 "groups_touched", "beliefs_total")}],
        description="What the belief refresh extracted and folded",
    )
    return report
