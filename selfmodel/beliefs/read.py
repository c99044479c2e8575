"""Reading beliefs back: one user's self-model now or at any past time, and its evidence."""

from __future__ import annotations

from datetime import datetime

import duckdb

from selfmodel.beliefs import parameters as beliefs_parameters
from selfmodel.settings import Settings
from warehouse.db import run, run_dicts

BELIEF_FIELDS = ("key", "value", "confidence", "evidence_count", "last_evidence_at")


def last_refresh_as_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    rows = run(con, "last_refresh")
    return rows[0][0] if rows else None


def user_beliefs(con: duckdb.DuckDBPyConnection, settings: Settings, user_id: str,
                 as_of: datetime | None = None, explain: bool = False) -> dict:
    """{"user_id", "as_of", "beliefs": [{key, value, confidence, evidence_count, last_evidence_at}]}.

    Without as_of: the stored beliefs at the last refresh's as-of. With as_of: recomputed from the
    observations made up to then, which is exactly what a refresh at that time would have produced.
    """
    current = last_refresh_as_of(con)
    at = as_of or current
    if at is None:
        return {"user_id": user_id, "as_of": None, "beliefs": []}
    if as_of is None:
        rows = run_dicts(con, "user_beliefs_current", {"user_id": user_id})
    else:
        # What the evidence said then, computed with the parameters in force now (an adopted calibration).
        with beliefs_parameters.registered(con, beliefs_parameters.in_force(con, settings)):
            rows = run_dicts(con, "user_beliefs_as_of", {"user_id": user_id, "at": at})
    beliefs = [{field: row[field] for field in BELIEF_FIELDS} for row in rows]
    if explain:
        evidence = run_dicts(con, "belief_evidence", {"user_id": user_id, "at": at})
        for belief in beliefs:
            belief["evidence"] = [
                {k: e[k] for k in ("observed_at", "weight", "extractor", "event_id", "event_kind", "event_text")}
                for e in evidence if e["key"] == belief["key"] and e["value"] == belief["value"]
            ]
    return {"user_id": user_id, "as_of": at, "beliefs": beliefs}
