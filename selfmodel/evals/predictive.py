"""The predictive eval: needs no labels, runs on whatever real data the warehouse holds.

A backtest over rolling origins: at each cutoff T (the newest is the data's end minus
`eval.predictive.cutoff_days`, then every `backtest_every_days` further back, `backtest_cutoffs` of them),
believe what the evidence up to T says, and check those beliefs against the observations the same
extractors draw from each user's events in (T, T + horizon]. A one-value belief holds if its value is the
window's best-supported value; a many-value belief holds if its value is observed in the window. Only
beliefs whose key the window says something about are judged. The judgements of every cutoff are pooled:
families with few judgements at one cutoff get enough over several.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

import duckdb

from selfmodel.beliefs import parameters as beliefs_parameters
from selfmodel.evals.metrics import (
    Judgement,
    brier,
    ece_interval,
    expected_calibration_error,
    learning_curve,
    log_loss,
    precision,
    reliability,
)
from selfmodel.settings import Settings
from warehouse.db import execute, load_sql, run, run_dicts


@dataclass(frozen=True)
class Window:
    cutoff: datetime
    horizon_end: datetime


@dataclass
class TopicTop1:
    """Per cutoff, users with a topic belief at the cutoff and topics in the window: how often their most
    confident topic, and how often their most frequent topic so far, is among the window's topics."""
    users: int = 0
    believed_hits: int = 0
    frequent_hits: int = 0

    def metrics(self) -> dict[str, float | int | None]:
        return {"topic_top1": self.believed_hits / self.users if self.users else None,
                "topic_top1_most_frequent": self.frequent_hits / self.users if self.users else None,
                "topic_top1_users": self.users}


@dataclass
class PredictiveData:
    windows: list[Window]  # the cutoffs judged, newest first
    judgements: list[Judgement]  # each carries its cutoff
    active_users: dict[tuple[datetime, str], float | None]  # (cutoff, user) -> highest confidence at the cutoff
    data_end: datetime
    skipped_cutoffs: list[datetime] = field(default_factory=list)  # at or before the first event: nothing to believe
    topic_top1: dict[datetime, TopicTop1] = field(default_factory=dict)

    @property
    def users(self) -> set[str]:
        return {user for _, user in self.active_users}


@dataclass
class SubsetMetrics:
    metrics: dict[str, float | int | None]
    per_key: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    reliability: list[dict] = field(default_factory=list)
    learning_curve: dict[str, list[dict]] = field(default_factory=dict)
    per_user: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (held, served), over all cutoffs
    per_key_reliability: dict[str, list[dict]] = field(default_factory=dict)


def backtest_cutoffs(data_end: datetime, cutoff_days: float, every_days: float, count: int) -> list[datetime]:
    """The rolling origins, newest first: data end - cutoff_days, then every `every_days` further back."""
    return cutoffs_back(data_end - timedelta(days=cutoff_days), every_days, count)


def cutoffs_back(start: datetime, every_days: float, count: int) -> list[datetime]:
    """`start`, then every `every_days` further back, `count` in all, newest first. Those the calendar cannot
    hold (before year 1, long before any event, so they would be skipped anyway) are left out."""
    cutoffs = []
    for k in range(count):
        try:
            cutoffs.append(start - timedelta(days=k * every_days))
        except OverflowError:
            break
    return cutoffs


def create_beliefs_at_cutoff(con: duckdb.DuckDBPyConnection, settings: Settings, cutoff: datetime) -> None:
    """Temp table `beliefs_at_cutoff` (user_id, key, value, cardinality, confidence): every user's beliefs
    recomputed from the observations made up to `cutoff` (what a refresh then would have believed), with the
    parameters in force (an adopted calibration's, else the config's). Replaces the table of an earlier cutoff."""
    with beliefs_parameters.registered(con, beliefs_parameters.in_force(con, settings)):
        execute(con, "create or replace temp table beliefs_at_cutoff as " + load_sql("beliefs_at_cutoff"),
                {"cutoff": cutoff})


def load_predictive_data(con: duckdb.DuckDBPyConnection, settings: Settings,
                         as_of: datetime | None = None) -> PredictiveData | None:
    """Judgements and active users at every backtest cutoff; None when the warehouse has no events.

    The data ends at the newest event, or at the newest no later than `as_of` (a past night): no cutoff
    and no window after it sees anything that came later. A cutoff at or before the first event is skipped.
    """
    options = settings.eval.predictive
    [(data_end,)] = run(con, "data_end", {"source": options.source, "as_of": as_of})
    if data_end is None:
        return None
    [(data_start,)] = run(con, "predictive_data_start", {"source": options.source, "as_of": as_of})
    cutoffs = backtest_cutoffs(data_end, options.cutoff_days, options.backtest_every_days, options.backtest_cutoffs)
    data = PredictiveData([], [], {}, data_end)
    for cutoff in cutoffs:
        if cutoff <= data_start and cutoff != cutoffs[0]:  # the newest cutoff is always judged, as before
            data.skipped_cutoffs.append(cutoff)
            continue
        window = Window(cutoff, cutoff + timedelta(days=options.horizon_days))
        data.windows.append(window)
        create_beliefs_at_cutoff(con, settings, cutoff)
        try:
            parameters = {"cutoff": window.cutoff, "horizon_end": window.horizon_end, "source": options.source}
            data.judgements += [
                Judgement(row["user_id"], row["key"], row["confidence"], bool(row["holds"]),
                          row["prior_interactions"], row["days_known"], cutoff)
                for row in run_dicts(con, "predictive_judgements", parameters)
            ]
            data.active_users |= {(cutoff, row["user_id"]): row["max_confidence"]
                                  for row in run_dicts(con, "predictive_active_users", parameters)}
            top1 = run_dicts(con, "predictive_topic_top1", parameters)
            data.topic_top1[cutoff] = TopicTop1(len(top1), sum(bool(r["believed_hit"]) for r in top1),
                                                sum(bool(r["frequent_hit"]) for r in top1))
        finally:
            execute(con, "drop table if exists beliefs_at_cutoff")
    return data


def pooled_topic_top1(data: PredictiveData) -> dict[str, float | int | None]:
    pooled = TopicTop1()
    for counts in data.topic_top1.values():
        pooled = TopicTop1(pooled.users + counts.users, pooled.believed_hits + counts.believed_hits,
                           pooled.frequent_hits + counts.frequent_hits)
    return pooled.metrics()


def family(key: str) -> str:
    return key.split("@")[0]


def family_metrics(members: list[Judgement], threshold: float, resamples: int, seed: int, level: float
                   ) -> dict[str, float | int | None]:
    """One key family's figures; the ECE's interval is a bootstrap over users at `level`."""
    value, served = precision(members, threshold)
    interval = ece_interval(members, resamples, seed, level) if resamples else None
    return {"beliefs_judged": len(members), "beliefs_served": served, "precision_at_threshold": value,
            "brier": brier(members), "log_loss": log_loss(members), "ece": expected_calibration_error(members),
            "ece_low": interval[0] if interval else None, "ece_high": interval[1] if interval else None,
            "users": len({j.user_id for j in members})}


def subset_metrics(judgements: list[Judgement], active_users: dict[tuple[datetime, str], float | None],
                   threshold: float, resamples: int = 0, seed: int = 0, level: float = 0.95) -> SubsetMetrics:
    """The predictive metrics over a set of judgements and the active (cutoff, user) pairs they belong to.

    `resamples` > 0 adds each key family's bootstrap interval of the ECE.
    """
    value, served = precision(judgements, threshold)
    enrichable = sum(1 for best in active_users.values() if best is not None and best >= threshold)
    metrics = {
        "precision_at_threshold": value,
        "coverage": enrichable / len(active_users) if active_users else None,
        "brier": brier(judgements),
        "log_loss": log_loss(judgements),
        "ece": expected_calibration_error(judgements),
        "beliefs_judged": len(judgements),
        "beliefs_served": served,
        "active_users": len(active_users),
        "users_enriched": enrichable,
    }
    by_family: dict[str, list[Judgement]] = {}
    for judgement in judgements:
        by_family.setdefault(family(judgement.key), []).append(judgement)
    per_key = {name: family_metrics(members, threshold, resamples, seed, level)
               for name, members in sorted(by_family.items())}
    per_key_reliability = {name: reliability(members) for name, members in sorted(by_family.items())}
    per_user: dict[str, tuple[int, int]] = {}
    for judgement in judgements:
        if judgement.confidence >= threshold:
            held, total = per_user.get(judgement.user_id, (0, 0))
            per_user[judgement.user_id] = (held + judgement.holds, total + 1)
    return SubsetMetrics(metrics, per_key, reliability(judgements), learning_curve(judgements, threshold), per_user,
                         per_key_reliability)


def production_sample(active_users: Iterable[str], size: int, seed: int) -> list[str]:
    """A seeded random sample of active users: what production looks like, not what a demo shows."""
    users = sorted(set(active_users))
    return sorted(random.Random(seed).sample(users, min(size, len(users))))


def restrict(data: PredictiveData, users: set[str]
             ) -> tuple[list[Judgement], dict[tuple[datetime, str], float | None]]:
    return ([j for j in data.judgements if j.user_id in users],
            {pair: best for pair, best in data.active_users.items() if pair[1] in users})
