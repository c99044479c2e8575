"""Eval metrics and the statistics behind regression detection. Pure functions, no I/O.

A "judgement" is one belief checked against what happened next: its confidence, and whether it held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
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
    cutoff: datetime | None = None  # the backtest cutoff it was judged at


def precision(judgements: Iterable[Judgement], threshold: float) -> tuple[float | None, int]:
    """Share of beliefs at or above the threshold that held, and how many there were."""
    served = [j.holds for j in judgements if j.confidence >= threshold]
    return (sum(served) / len(served) if served else None), len(served)


def brier(judgements: Sequence[Judgement]) -> float | None:
    if not judgements:
        return None
    return sum((j.confidence - float(j.holds)) ** 2 for j in judgements) / len(judgements)


LOG_LOSS_CLIP = 1e-6


def log_loss(judgements: Sequence[Judgement]) -> float | None:
    """Mean negative log-likelihood of what happened; confidence clipped to [1e-6, 1 - 1e-6] so that a
    confident miss costs about 13.8 nats, not infinity."""
    if not judgements:
        return None
    total = 0.0
    for judgement in judgements:
        p = min(max(judgement.confidence, LOG_LOSS_CLIP), 1 - LOG_LOSS_CLIP)
        total -= math.log(p) if judgement.holds else math.log(1 - p)
    return total / len(judgements)


def confidence_bin(confidence: float, bins: int = 10) -> int:
    """The reliability bin of a confidence: [k/bins, (k+1)/bins), the last bin closed at 1."""
    index = min(max(int(confidence * bins), 0), bins - 1)
    # int(c * bins) can land one off at a bin edge (float rounding): compare with the edges themselves
    if index < bins - 1 and confidence >= (index + 1) / bins:
        index += 1
    elif index > 0 and confidence < index / bins:
        index -= 1
    return index


def reliability(judgements: Sequence[Judgement], bins: int = 10) -> list[dict]:
    """Reliability-diagram data: per confidence bin, the mean confidence, the share that held, the count."""
    binned: list[list[Judgement]] = [[] for _ in range(bins)]
    for judgement in judgements:
        binned[confidence_bin(judgement.confidence, bins)].append(judgement)
    table = []
    for index, members in enumerate(binned):
        low, high = index / bins, (index + 1) / bins
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


def ece_interval(judgements: Sequence[Judgement], resamples: int, seed: int, level: float,
                 bins: int = 10) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the ECE, resampling users (not beliefs) with replacement.

    One user's beliefs are not independent of each other (one busy user can fill a bin), so the unit of
    resampling is the user. ECE = sum over bins of |sum of confidences - number held| / number judged, so
    each resample needs only per-user bin sums: a multiplicity matrix (resamples x users) times them.
    """
    if not judgements:
        return None
    users = sorted({j.user_id for j in judgements})
    index = {user: i for i, user in enumerate(users)}
    # per user: for each bin the sum of confidence minus holds, and the number of judgements
    gaps = np.zeros((len(users), bins))
    counts = np.zeros(len(users))
    for judgement in judgements:
        row = index[judgement.user_id]
        gaps[row, confidence_bin(judgement.confidence, bins)] += judgement.confidence - float(judgement.holds)
        counts[row] += 1
    rng = np.random.default_rng(seed)
    # resamples in chunks: the multiplicity matrix of a big warehouse would not fit at once
    chunk = max(1, min(resamples, 4_000_000 // len(users)))
    draws = []
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        multiplicity = rng.multinomial(len(users), np.full(len(users), 1 / len(users)), size=size)
        judged = multiplicity @ counts
        draws.append(np.abs(multiplicity @ gaps).sum(axis=1) / np.where(judged > 0, judged, 1))
    values = np.concatenate(draws)
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


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
