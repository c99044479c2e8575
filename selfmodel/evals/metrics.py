"""Eval metrics and the statistics behind regression detection. Pure functions, no I/O.

A "judgement" is one belief checked against what happened next: its confidence, and whether it held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Judgement:
    user_id: str
    key: str
    confidence: float
    holds: bool
    prior_interactions: int = 0
    days_known: float = 0.0


def precision(judgements: Iterable[Judgement], threshold: float) -> tuple[float | None, int]:
    """Share of beliefs at or above the threshold that held, and how many there were."""
    served = [j.holds for j in judgements if j.confidence >= threshold]
    return (sum(served) / len(served) if served else None), len(served)


def brier(judgements: Sequence[Judgement]) -> float | None:
    if not judgements:
        return None
    return sum((j.confidence - float(j.holds)) ** 2 for j in judgements) / len(judgements)


def reliability(judgements: Sequence[Judgement], bins: int = 10) -> list[dict]:
    """Reliability-diagram data: per confidence bin, the mean confidence, the share that held, the count."""
    table = []
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        members = [j for j in judgements if low <= j.confidence < high or (index == bins - 1 and j.confidence == 1)]
        table.append({
            "bin": f"{low:.1f}-{high:.1f}",
            "mean_confidence": sum(j.confidence for j in members) / len(members) if members else None,
            "observed_rate": sum(j.holds for j in members) / len(members) if members else None,
            "count": len(members),
        })
    return table


def expected_calibration_error(judgements: Sequence[Judgement], bins: int = 10) -> float | None:
    """Count-weighted mean gap between confidence and observed rate over the reliability bins."""
    if not judgements:
        return None
    total = len(judgements)
    return sum(row["count"] / total * abs(row["mean_confidence"] - row["observed_rate"])
               for row in reliability(judgements, bins) if row["count"])


def bucket(value: float, edges: Sequence[tuple[float, float, str]]) -> str:
    for low, high, name in edges:
        if low <= value <= high:
            return name
    return edges[-1][2]


PRIOR_INTERACTION_BUCKETS = [(0, 1, "1"), (2, 4, "2-4"), (5, 9, "5-9"), (10, math.inf, "10+")]
DAYS_KNOWN_BUCKETS = [(0, 1, "0-1 days"), (1.000001, 7, "2-7 days"), (7.000001, 30, "8-30 days"),
                      (30.000001, math.inf, "31+ days")]


def learning_curve(judgements: Sequence[Judgement], threshold: float) -> dict[str, list[dict]]:
    """Precision at the threshold by prior interactions and by days since the user was first seen."""
    curves = {}
    for name, attribute, edges in (("by_prior_interactions", "prior_interactions", PRIOR_INTERACTION_BUCKETS),
                                   ("by_days_known", "days_known", DAYS_KNOWN_BUCKETS)):
        rows = []
        for _, _, label in edges:
            members = [j for j in judgements if bucket(getattr(j, attribute), edges) == label]
            value, served = precision(members, threshold)
            users = len({j.user_id for j in members})
            rows.append({"bucket": label, "precision": value, "served": served, "judged": len(members), "users": users})
        curves[name] = rows
    return curves


def mcnemar_p_value(before: Sequence[bool], after: Sequence[bool]) -> float:
    """Exact two-sided McNemar test on paired pass/fail outcomes of the same cases."""
    from scipy.stats import binomtest

    lost = sum(1 for b, a in zip(before, after) if b and not a)
    gained = sum(1 for b, a in zip(before, after) if a and not b)
    if lost + gained == 0:
        return 1.0
    return float(binomtest(lost, lost + gained, 0.5).pvalue)


def paired_bootstrap_difference(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                                resamples: int = 2000, seed: int = 0, level: float = 0.95
                                ) -> tuple[float, float, float] | None:
    """Bootstrap interval of after - before for a ratio metric, resampling the units both runs share.

    `before`/`after` map a unit (a user) to (hits, trials), e.g. beliefs that held and beliefs served.
    Returns (difference, low, high) or None when the runs share no unit with trials.
    """
    units = [u for u in before.keys() & after.keys() if before[u][1] or after[u][1]]
    if not units:
        return None
    data = np.array([[*before[u], *after[u]] for u in sorted(units)], dtype=float)

    def difference(rows: np.ndarray) -> float:
        b_trials, a_trials = rows[:, 1].sum(), rows[:, 3].sum()
        if not b_trials or not a_trials:
            return 0.0
        return rows[:, 2].sum() / a_trials - rows[:, 0].sum() / b_trials

    observed = difference(data)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(data), size=(resamples, len(data)))
    sums = data[picks].sum(axis=1)  # (resamples, 4): hits/trials before, hits/trials after
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = sums[:, 2] / sums[:, 3] - sums[:, 0] / sums[:, 1]
    draws = draws[np.isfinite(draws)]
    tail = (1 - level) / 2
    return observed, float(np.quantile(draws, tail)), float(np.quantile(draws, 1 - tail))
