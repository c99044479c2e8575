"""The belief model: decayed evidence and the confidence it gives. Pure functions, no I/O.

For a user, a key k and a value v, with observations (w_i, t_i), the decayed evidence at time t is

    S_v(t) = sum over t_i <= t of  w_i * 2^(-(t - t_i) / h_k)

and the confidence is

    one-valued keys  (a user has one role, one language):   C_v = S_v / (sum_u S_u + alpha_k)
    many-valued keys (several topics, several facts):       C_v = S_v / (S_v + beta_k)

Both lie in [0, 1): the prior (alpha or beta > 0) keeps one observation from ever giving certainty,
no evidence gives 0, and between observations every S_v halves each half-life, so confidence decays.
Because S decays by the same factor for every value of a key, S can be kept at an as-of time t0 and
moved to t1 >= t0 exactly: S(t1) = S(t0) * 2^(-(t1 - t0) / h) + the new observations' terms. That is
what makes an incremental refresh equal to a full recompute.

warehouse/queries/fold_observations.sql computes the same thing in bulk; tests hold the two together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Literal

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class KeyPolicy:
    """How evidence for one key family turns into confidence."""

    cardinality: Literal["one", "many"]
    half_life_days: float
    prior: float  # alpha for one-valued keys, beta for many-valued keys

    def __post_init__(self) -> None:
        if self.half_life_days <= 0 or self.prior <= 0:
            raise ValueError("half_life_days and prior must be positive")


@dataclass(frozen=True)
class Observation:
    value: str
    weight: float
    observed_at: datetime


def decay_factor(from_time: datetime, to_time: datetime, half_life_days: float) -> float:
    """2^(-(to - from) / h): how much evidence from `from_time` still counts at `to_time`."""
    elapsed_days = (to_time - from_time).total_seconds() / SECONDS_PER_DAY
    return 2.0 ** (-elapsed_days / half_life_days)


def decayed_evidence(observations: Iterable[Observation], at: datetime, half_life_days: float) -> dict[str, float]:
    """S_v(at) per value, from the observations made at or before `at`."""
    sums: dict[str, float] = {}
    for observation in observations:
        if observation.observed_at <= at and observation.weight > 0:
            sums[observation.value] = sums.get(observation.value, 0.0) + observation.weight * decay_factor(
                observation.observed_at, at, half_life_days
            )
    return sums


def confidences(evidence: dict[str, float], policy: KeyPolicy) -> dict[str, float]:
    """Confidence per value from its decayed evidence (the formulas in the module docstring)."""
    if policy.cardinality == "one":
        total = sum(evidence.values()) + policy.prior
        return {value: s / total for value, s in evidence.items()}
    return {value: s / (s + policy.prior) for value, s in evidence.items()}


def move_evidence(evidence: dict[str, float], from_time: datetime, to_time: datetime,
                  half_life_days: float, new: Iterable[Observation] = ()) -> dict[str, float]:
    """Evidence kept at `from_time`, moved to `to_time` and joined by new observations (incremental step)."""
    if to_time < from_time:
        raise ValueError("evidence can only move forward in time; recompute for an earlier as-of")
    factor = decay_factor(from_time, to_time, half_life_days)
    moved = {value: s * factor for value, s in evidence.items()}
    for value, s in decayed_evidence(new, to_time, half_life_days).items():
        moved[value] = moved.get(value, 0.0) + s
    return moved
