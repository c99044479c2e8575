"""The belief model: decayed evidence and the confidence it gives. Pure functions, no I/O.

For a user, a key k (of family f) and a value v, with observations i (weight w_i at time t_i, of
evidence kind k_i, from evidence unit u_i: the post, thread or session it came from), the decayed
evidence at time t is

    S_v(t) = sum over t_i <= t of  w_i * m_f[k_i] * d_f^(r_i) * 2^(-(t - t_i) / h_f)

where m_f[kind] is the fitted weight of that kind of evidence (1 by default), r_i the number of earlier
observations of the same (user, key, value) from the same unit and d_f in (0, 1] the discount for repeated
evidence (1 by default: 60 upvotes on one answer count 60 times; at 0.5 they count under 2). The raw
confidence, with pi_f[v] the population base rate of v (0 by default) and the prior kappa_f > 0:

    one-valued keys  (a user has one role, one language):   raw_v = (S_v + kappa * pi_v) / (sum_u S_u + kappa)
    many-valued keys (several topics, several facts):       raw_v = (S_v + kappa * pi_v) / (S_v + kappa)

and the confidence is raw put through the family's monotone calibration map (beta calibration,
identity by default), m(x) = 1 / (1 + exp(-(a ln x - b ln(1 - x) + c))) with a, b >= 0. For a one-valued
key, mapped values that would together claim certainty are scaled down so they sum below 1.

With every fitted part at its default this is the original model, C_v = S_v / (sum S + kappa) or
S_v / (S_v + kappa). Between observations every S_v halves each half-life, so confidence decays; the
prior keeps one observation from ever giving certainty; a rare value (small pi) needs more evidence
than a common one.

Incremental refreshes stay exact because a refresh recomputes every (user, key) it touches from all of its
observations, and every other (user, key) only decays: S(t1) = S(t0) * 2^(-(t1 - t0) / h), exactly (the
`beliefs` view moves stored evidence to the latest refresh's as-of this way). Parameters that change (a
calibration adopted, a config edited) make the next refresh re-fold every group.

The SQL (warehouse/queries/effective_observations.sql, fold_from_scope.sql and the belief_* macros of
migration 0009) computes the same; tests hold the two together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Literal, Mapping

SECONDS_PER_DAY = 86_400.0
# The most a one-valued key's mapped confidences may sum to (strictly below certainty).
ONE_VALUED_MASS = 1.0 - 1e-9
# Raw confidence is clipped into (0, 1) before the map takes logarithms.
RAW_FLOOR = 1e-12


@dataclass(frozen=True)
class CalibrationMap:
    """Beta calibration (Kull et al. 2017): monotone non-decreasing in raw confidence when a, b >= 0."""

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def __post_init__(self) -> None:
        if self.a < 0 or self.b < 0:
            raise ValueError("a calibration map needs a, b >= 0 to be monotone")

    @property
    def is_identity(self) -> bool:
        return (self.a, self.b, self.c) == (1.0, 1.0, 0.0)

    def __call__(self, raw: float) -> float:
        if self.is_identity:
            return raw
        x = min(max(raw, RAW_FLOOR), 1.0 - RAW_FLOOR)
        z = self.a * math.log(x) - self.b * math.log1p(-x) + self.c
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass(frozen=True)
class KeyPolicy:
    """How evidence for one key family turns into confidence."""

    cardinality: Literal["one", "many"]
    half_life_days: float
    prior: float  # kappa: alpha for one-valued keys, beta for many-valued keys
    repeat_discount: float = 1.0
    kind_weights: Mapping[str, float] = field(default_factory=dict)  # evidence kind -> m (missing: 1)
    base_rates: Mapping[str, float] = field(default_factory=dict)  # value -> pi (missing: 0)
    calibration: CalibrationMap = CalibrationMap()

    def __post_init__(self) -> None:
        if self.half_life_days <= 0 or self.prior <= 0:
            raise ValueError("half_life_days and prior must be positive")
        if not 0 < self.repeat_discount <= 1:
            raise ValueError("repeat_discount must be in (0, 1]")
        if any(w <= 0 for w in self.kind_weights.values()):
            raise ValueError("kind weights must be positive")
        if any(not 0 <= p < 1 for p in self.base_rates.values()):
            raise ValueError("base rates must be in [0, 1)")

    def kind_weight(self, kind: str | None) -> float:
        return self.kind_weights.get(kind or "", 1.0)

    def base_rate(self, value: str) -> float:
        return self.base_rates.get(value, 0.0)


@dataclass(frozen=True)
class Observation:
    value: str
    weight: float
    observed_at: datetime
    kind: str | None = None  # evidence kind, e.g. "expertise:accept" (selfmodel.beliefs.observe)
    unit: str | None = None  # the post, thread or session it came from; None: its own unit
    event_id: str = ""


def decay_factor(from_time: datetime, to_time: datetime, half_life_days: float) -> float:
    """2^(-(to - from) / h): how much evidence from `from_time` still counts at `to_time`."""
    elapsed_days = (to_time - from_time).total_seconds() / SECONDS_PER_DAY
    return 2.0 ** (-elapsed_days / half_life_days)


def effective_weights(observations: Iterable[Observation], policy: KeyPolicy | None = None) -> list[float]:
    """w_i * m[kind_i] * d^(r_i), in the order given; r_i counts the earlier observations (by time, then
    event id) of the same value from the same unit. Without a policy: the weights as extracted."""
    observations = list(observations)
    if policy is None:
        return [o.weight for o in observations]
    order = sorted(range(len(observations)), key=lambda i: (observations[i].observed_at, observations[i].event_id,
                                                            observations[i].weight))
    seen: dict[tuple, int] = {}
    weights = [0.0] * len(observations)
    for index in order:
        o = observations[index]
        # Without a unit an observation is its own (its event's): as the SQL's coalesce(evidence_unit, event_id).
        unit = (o.value, "unit", o.unit) if o.unit is not None else (o.value, "event", o.event_id or index)
        rank = seen.get(unit, 0)
        seen[unit] = rank + 1
        weights[index] = o.weight * policy.kind_weight(o.kind) * policy.repeat_discount ** rank
    return weights


def decayed_evidence(observations: Iterable[Observation], at: datetime, half_life_days: float,
                     policy: KeyPolicy | None = None) -> dict[str, float]:
    """S_v(at) per value, from the observations made at or before `at` (with `policy`: its fitted weights)."""
    due = [o for o in observations if o.observed_at <= at and o.weight > 0]
    sums: dict[str, float] = {}
    for observation, weight in zip(due, effective_weights(due, policy)):
        sums[observation.value] = sums.get(observation.value, 0.0) + weight * decay_factor(
            observation.observed_at, at, half_life_days
        )
    return sums


def raw_confidences(evidence: dict[str, float], policy: KeyPolicy) -> dict[str, float]:
    """Raw confidence per value from its decayed evidence and base rate (module docstring)."""
    kappa = policy.prior
    if policy.cardinality == "one":
        total = sum(evidence.values()) + kappa
        return {value: (s + kappa * policy.base_rate(value)) / total for value, s in evidence.items()}
    return {value: (s + kappa * policy.base_rate(value)) / (s + kappa) for value, s in evidence.items()}


def confidences(evidence: dict[str, float], policy: KeyPolicy) -> dict[str, float]:
    """Confidence per value: raw confidence through the family's calibration map (module docstring)."""
    raw = raw_confidences(evidence, policy)
    if policy.calibration.is_identity:
        return raw
    mapped = {value: policy.calibration(x) for value, x in raw.items()}
    if policy.cardinality == "one":
        total = sum(mapped.values())
        if total > ONE_VALUED_MASS:
            mapped = {value: c * ONE_VALUED_MASS / total for value, c in mapped.items()}
    return mapped


def move_evidence(evidence: dict[str, float], from_time: datetime, to_time: datetime,
                  half_life_days: float, new: Iterable[Observation] = ()) -> dict[str, float]:
    """Evidence kept at `from_time`, moved to `to_time` and joined by new observations (decay only).

    Exact for observations whose effective weight does not depend on the others (no repeat discount);
    refreshes recompute a touched group from all its observations instead (module docstring)."""
    if to_time < from_time:
        raise ValueError("evidence can only move forward in time; recompute for an earlier as-of")
    factor = decay_factor(from_time, to_time, half_life_days)
    moved = {value: s * factor for value, s in evidence.items()}
    for value, s in decayed_evidence(new, to_time, half_life_days).items():
        moved[value] = moved.get(value, 0.0) + s
    return moved
