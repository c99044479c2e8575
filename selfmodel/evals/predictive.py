"""The predictive eval: needs no labels, runs on whatever real data the warehouse holds.

Pick a cutoff T (the data's end minus `eval.predictive.cutoff_days`), believe what the evidence up to
T says, and check those beliefs against the observations the same extractors draw from each user's
events in (T, T + horizon]. A one-value belief holds if its value is the window's best-supported
value; a many-value belief holds if its value is observed in the window. Only beliefs whose key the
window says something about are judged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from selfmodel.beliefs import parameters as beliefs_parameters
from selfmodel.evals.metrics import (
    Judgement,
    brier,
    expected_calibration_error,
    learning_curve,
    precision,
    reliability,
)
from selfmodel.settings import Settings
from warehouse.db import execute, load_sql, run, run_dicts


@dataclass
class PredictiveData:
    cutoff: datetime
    horizon_end: datetime
    judgements: list[Judgement]
    active_users: dict[str, float | None]  # user -> highest confidence at the cutoff
    data_end: datetime


@dataclass
class SubsetMetrics:
    metrics: dict[str, float | int | None]
    per_key: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    reliability: list[dict] = field(default_factory=list)
    learning_curve: dict[str, list[dict]] = field(default_factory=dict)
    per_user: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (held, served)


def load_predictive_data(con: duckdb.DuckDBPyConnection, settings: Settings,
                         as_of: datetime | None = None) -> PredictiveData | None:
    """Judgements and active users for the configured cutoff; None when the warehouse has no events.

    The data ends at the newest event, or at the newest no later than `as_of` (a past night): the cutoff
    and the window after it then see nothing that came later.
    """
    options = settings.eval.predictive
    [(data_end,)] = run(con, "data_end", {"source": options.source, "as_of": as_of})
    if data_end is None:
        return None
    cutoff = data_end - timedelta(days=options.cutoff_days)
    horizon_end = cutoff + timedelta(days=options.horizon_days)
    create_beliefs_at_cutoff(con, settings, cutoff)
    window = {"cutoff": cutoff, "horizon_end": horizon_end, "source": options.source}
    judgements = [
        Judgement(row["user_id"], row["key"], row["confidence"], bool(row["holds"]), row["prior_interactions"],
                  row["days_known"])
        for row in run_dicts(con, "predictive_judgements", window)
    ]
    active = {row["user_id"]: row["max_confidence"] for row in run_dicts(con, "predictive_active_users", window)}
    execute(con, "drop table beliefs_at_cutoff")
    return PredictiveData(cutoff, horizon_end, judgements, active, data_end)


def create_beliefs_at_cutoff(con: duckdb.DuckDBPyConnection, settings: Settings, cutoff: datetime) -> None:
    """Temp table beliefs_at_cutoff (user_id, key, value, cardinality, confidence): what a refresh at the cutoff
    would have believed, with the parameters in force (an adopted calibration's, else the config's)."""
    with beliefs_parameters.registered(con, beliefs_parameters.in_force(con, settings)):
        execute(con, "create or replace temp table beliefs_at_cutoff as " + load_sql("beliefs_at_cutoff"),
                {"cutoff": cutoff})


def family(key: str) -> str:
    return key.split("@")[0]


def subset_metrics(judgements: list[Judgement], active_users: dict[str, float | None], threshold: float
                   ) -> SubsetMetrics:
    """The predictive metrics over a set of judgements and the active users they belong to."""
    value, served = precision(judgements, threshold)
    enrichable = sum(1 for best in active_users.values() if best is not None and best >= threshold)
    metrics = {
        "precision_at_threshold": value,
        "coverage": enrichable / len(active_users) if active_users else None,
        "brier": brier(judgements),
        "ece": expected_calibration_error(judgements),
        "beliefs_judged": len(judgements),
        "beliefs_served": served,
        "active_users": len(active_users),
        "users_enriched": enrichable,
    }
    per_key = {}
    for key in sorted({family(j.key) for j in judgements}):
        members = [j for j in judgements if family(j.key) == key]
        key_precision, key_served = precision(members, threshold)
        per_key[key] = {"precision_at_threshold": key_precision, "beliefs_served": key_served,
                        "beliefs_judged": len(members), "brier": brier(members),
                        "ece": expected_calibration_error(members)}
    per_user: dict[str, tuple[int, int]] = {}
    for judgement in judgements:
        if judgement.confidence >= threshold:
            held, total = per_user.get(judgement.user_id, (0, 0))
            per_user[judgement.user_id] = (held + judgement.holds, total + 1)
    return SubsetMetrics(metrics, per_key, reliability(judgements), learning_curve(judgements, threshold), per_user)


def production_sample(active_users: dict[str, float | None], size: int, seed: int) -> list[str]:
    """A seeded random sample of active users: what production looks like, not what a demo shows."""
    users = sorted(active_users)
    return sorted(random.Random(seed).sample(users, min(size, len(users))))


def restrict(data: PredictiveData, users: set[str]) -> tuple[list[Judgement], dict[str, float | None]]:
    return ([j for j in data.judgements if j.user_id in users],
            {u: best for u, best in data.active_users.items() if u in users})
