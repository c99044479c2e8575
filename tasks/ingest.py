"""Prefect task wrapping one source's ingest batch (the work is in selfmodel.ingest)."""

from __future__ import annotations

from prefect import get_run_logger, task

from selfmodel.analyst import open_for_writing
from selfmodel.ingest import ingest_source
from selfmodel.settings import load_settings
from tasks.retry import transient_failure


class BatchFailed(RuntimeError):
    """A source's batch could not run; its report is recorded in ingest_batches."""

    def __init__(self, report) -> None:
        super().__init__(f"batch {report.batch_id} of source {report.source} failed: {report.error}")
        self.retryable = report.retryable


@task(name="ingest-source", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=transient_failure)
def ingest_source_task(config_path: str | None, source_name: str) -> dict:
    """Ingest one source into the warehouse as one atomic batch; log and return its counts."""
    logger = get_run_logger()
    settings = load_settings(config_path)
    source = settings.source(source_name)
    with open_for_writing(settings, wait=True) as con:
        report = ingest_source(con, settings, source)
    logger.info(
        "source %s batch %s: %d rows read -> %d loaded, %d duplicates, %d quarantined (%d late), %d labels",
        report.source, report.batch_id, report.rows_read, report.loaded, report.duplicates,
        report.quarantined, report.late_events, report.labels_loaded,
    )
    for entry in report.files:
        if entry.get("hint"):
            logger.warning("source %s, file %s: %s", report.source, entry["path"], entry["hint"])
    if report.status != "committed":
        raise BatchFailed(report)
    return report.to_json()
