"""Read what ingestion quarantined, for people (`selfmodel quarantine`) and programs (--json)."""

from __future__ import annotations

from pathlib import Path

from warehouse.db import connect, run_dicts


def quarantine_summary(warehouse_path: Path, source: str | None = None, reason: str | None = None,
                       limit: int = 20) -> dict:
    """{"counts": [{source, reason, records}], "records": [latest quarantined records]}."""
    con = connect(warehouse_path, read_only=True)
    try:
        filters = {"source": source, "reason": reason}
        return {
            "counts": run_dicts(con, "quarantine_counts", filters),
            "records": run_dicts(con, "quarantine_examples", {**filters, "limit": limit}),
        }
    finally:
        con.close()
