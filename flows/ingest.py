"""The `ingest` flow: every configured source (or one) into the warehouse, one atomic batch each."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from selfmodel.ingest import refuse_overlapping_sources
from selfmodel.lock import run_writer_lock
from selfmodel.settings import find_config_path, load_settings
from tasks.ingest import ingest_source_task
from warehouse.db import WarehouseBusyError

COUNT_COLUMNS = ("source", "batch_id", "rows_read", "loaded", "duplicates", "quarantined", "late_events",
                 "labels_loaded", "events_loaded")


@flow(name="ingest")
def ingest(config_path: str | None = None, source: str | None = None) -> list[dict]:
    """Ingest interaction logs into the DuckDB warehouse; bad records are quarantined, none dropped."""
    # Absolute, so tasks on another worker process read the same file.
    config_path = str(Path(find_config_path(config_path)).resolve())
    settings = load_settings(config_path)
    names = [settings.source(source).name] if source else [s.name for s in settings.sources]
    refuse_overlapping_sources(settings, source)  # before the lock and before anything is written
    reports, failures = [], []
    # One after another on purpose: DuckDB allows one writer, so parallel sources would only queue.
    # A failed source does not stop the others; the flow fails at the end, naming it. A busy warehouse
    # (another process kept it open longer than the run waits) stops the run: the next source would wait too.
    # The whole run holds the writer lock (re-entrant: the nightly run already holds it), so no other
    # writer slips in between two sources.
    with run_writer_lock(settings, "ingest flow run"):
        for name in names:
            state = ingest_source_task(config_path, name, return_state=True)
            if state.is_completed():
                reports.append(state.result())
                continue
            error = state.result(raise_on_failure=False)
            if isinstance(error, WarehouseBusyError):
                raise error
            failures.append(name)
    create_table_artifact(
        key="ingest-counts",
        table=[{column: report[column] for column in COUNT_COLUMNS} for report in reports],
        description=f"Ingest counts per source; failed: {', '.join(failures) or 'none'}",
    )
    if failures:
        raise RuntimeError(f"ingest failed for source(s): {', '.join(failures)}")
    return reports
