"""Fitting the belief model to what users did next. Pure numpy / scipy, no I/O (docs/reference.md "Calibration").

The data of one key family: every belief judged at some cutoffs (its value, whether it held in the window
after the cutoff) and the observations behind it (age at the cutoff, extracted weight, evidence kind,
rank within its unit). `raw_confidence` computes what selfmodel.beliefs.model computes, vectorised, so the
fit optimises the very formula the refresh folds with. The fit minimises the mean log loss of "the belief
holds" over the training cutoffs, with a small ridge pulling kind weights towards 1 (the prior and the
weights can trade off against each other exactly; the ridge picks the smallest change). A beta calibration
map is then fitted on the same training judgements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import minimize

from selfmodel.beliefs.model import ONE_VALUED_MASS, RAW_FLOOR, CalibrationMap, KeyPolicy

PROBABILITY_FLOOR = 1e-6  # log loss clips probabilities into [floor, 1 - floor]
RIDGE = 1e-3  # on the mean log loss scale, per squared log kind weight
# Bounds of the fitted parameters: half-life 1 day .. 10 years, prior 0.05 .. 200, discount 0.05 .. 1,
# kind weights 1/50 .. 50, map a, b 0 .. 20, c -20 .. 20.
HALF_LIFE_BOUNDS = (math.log(1.0), math.log(3650.0))
PRIOR_BOUNDS = (math.log(0.05), math.log(200.0))
DISCOUNT_BOUNDS = (0.05, 1.0)
KIND_WEIGHT_BOUNDS = (math.log(0.02), math.log(50.0))
# A kind of evidence needs this many judged beliefs resting on it before its weight is fitted.
MIN_BELIEFS_PER_KIND = 20


@dataclass
class FamilyData:
    """Judged beliefs of one key family at one or more cutoffs, flattened for numpy."""

    cardinality: str
    holds: np.ndarray  # per belief: 1.0 if it held in the window after its cutoff
    group: np.ndarray  # per belief: index of its (cutoff, user, key); a one-valued key's values share it
    user: np.ndarray  # per belief: index of its user (bootstrap over users)
    value: np.ndarray  # per belief: index into value_names
    value_names: list[str]
    obs_belief: np.ndarray  # per observation: the belief it is evidence for
    obs_age_days: np.ndarray
    obs_weight: np.ndarray  # as extracted (extractor weight included)
    obs_kind: np.ndarray  # index into kind_names
    obs_rank: np.ndarray  # earlier observations of the same user, key, value from the same unit
    kind_names: list[str]
    split: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))  # per belief: train | validation

    @property
    def judged(self) -> int:
        return int(self.holds.size)

    def subset(self, mask: np.ndarray) -> "FamilyData":
        """The beliefs where mask holds, with their observations (indices renumbered)."""
        keep = np.flatnonzero(mask)
        renumber = np.full(self.holds.size, -1)
        renumber[keep] = np.arange(keep.size)
        obs_keep = renumber[self.obs_belief] >= 0
        _, groups = np.unique(self.group[keep], return_inverse=True)
        return replace(self, holds=self.holds[keep], group=groups, user=self.user[keep], value=self.value[keep],
                       obs_belief=renumber[self.obs_belief[obs_keep]], obs_age_days=self.obs_age_days[obs_keep],
                       obs_weight=self.obs_weight[obs_keep], obs_kind=self.obs_kind[obs_keep],
                       obs_rank=self.obs_rank[obs_keep],
                       split=self.split[keep] if self.split.size else self.split)


def _kind_weight_array(data: FamilyData, policy: KeyPolicy) -> np.ndarray:
    return np.array([policy.kind_weight(kind) for kind in data.kind_names], dtype=float)


def _base_rate_array(data: FamilyData, policy: KeyPolicy) -> np.ndarray:
    return np.array([policy.base_rate(value) for value in data.value_names], dtype=float)


def _raw(data: FamilyData, half_life: float, prior: float, discount: float, kind_weights: np.ndarray,
         base_rates: np.ndarray) -> np.ndarray:
    effective = (data.obs_weight * kind_weights[data.obs_kind] * discount ** data.obs_rank
                 * np.exp2(-data.obs_age_days / half_life))
    evidence = np.bincount(data.obs_belief, weights=effective, minlength=data.holds.size)
    pseudo = prior * base_rates[data.value]
    if data.cardinality == "one":
        total = np.bincount(data.group, weights=evidence)[data.group]
        return (evidence + pseudo) / (total + prior)
    return (evidence + pseudo) / (evidence + prior)


def raw_confidence(data: FamilyData, policy: KeyPolicy) -> np.ndarray:
    """Raw confidence of every belief (selfmodel.beliefs.model.raw_confidences, vectorised)."""
    return _raw(data, policy.half_life_days, policy.prior, policy.repeat_discount,
                _kind_weight_array(data, policy), _base_rate_array(data, policy))


def apply_map(raw: np.ndarray, calibration: CalibrationMap, group: np.ndarray, cardinality: str) -> np.ndarray:
    """The map of every belief, a one-valued key's values scaled below certainty (model.confidences)."""
    if calibration.is_identity:
        return raw
    x = np.clip(raw, RAW_FLOOR, 1.0 - RAW_FLOOR)
    z = calibration.a * np.log(x) - calibration.b * np.log1p(-x) + calibration.c
    mapped = np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))
    if cardinality == "one":
        total = np.bincount(group, weights=mapped)[group]
        mapped = np.where(total > ONE_VALUED_MASS, mapped * ONE_VALUED_MASS / total, mapped)
    return mapped


def confidence(data: FamilyData, policy: KeyPolicy) -> np.ndarray:
    return apply_map(raw_confidence(data, policy), policy.calibration, data.group, data.cardinality)


def log_loss(probability: np.ndarray, holds: np.ndarray) -> float | None:
    if probability.size == 0:
        return None
    p = np.clip(probability, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return float(-np.mean(holds * np.log(p) + (1.0 - holds) * np.log1p(-p)))


def calibration_error(probability: np.ndarray, holds: np.ndarray, bins: int = 10) -> float | None:
    """ECE as selfmodel.evals.metrics computes it: count-weighted |mean confidence - share held| per bin."""
    if probability.size == 0:
        return None
    index = np.minimum((probability * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() * abs(probability[members].mean() - holds[members].mean())
    return float(total / probability.size)


def kinds_to_fit(data: FamilyData) -> list[int]:
    """Kinds with enough judged beliefs resting on them to fit a weight (the others keep theirs)."""
    beliefs_per_kind = [np.unique(data.obs_belief[data.obs_kind == k]).size for k in range(len(data.kind_names))]
    return [k for k, count in enumerate(beliefs_per_kind) if count >= MIN_BELIEFS_PER_KIND]


def fit_policy(data: FamilyData, start: KeyPolicy, fit_discount: bool = True, fit_kinds: bool = True,
               max_iterations: int = 200) -> KeyPolicy:
    """Half-life, prior, repeat discount and kind weights minimising the training log loss, from `start`
    (its base rates are kept; its map is not used: raw confidence is fitted, the map comes after)."""
    base_rates = _base_rate_array(data, start)
    kind_weights = _kind_weight_array(data, start)
    fitted_kinds = kinds_to_fit(data) if fit_kinds else []
    has_repeats = bool(np.any(data.obs_rank > 0))
    x0 = [math.log(start.half_life_days), math.log(start.prior)]
    bounds = [HALF_LIFE_BOUNDS, PRIOR_BOUNDS]
    if fit_discount and has_repeats:
        x0.append(start.repeat_discount)
        bounds.append(DISCOUNT_BOUNDS)
    x0 += [math.log(kind_weights[k]) for k in fitted_kinds]
    bounds += [KIND_WEIGHT_BOUNDS] * len(fitted_kinds)
    x0 = [min(max(v, lo), hi) for v, (lo, hi) in zip(x0, bounds)]

    def unpack(x: np.ndarray) -> tuple[float, float, float, np.ndarray]:
        half_life, prior = math.exp(x[0]), math.exp(x[1])
        position = 2
        discount = start.repeat_discount
        if fit_discount and has_repeats:
            discount, position = float(x[2]), 3
        weights = kind_weights.copy()
        for offset, k in enumerate(fitted_kinds):
            weights[k] = math.exp(x[position + offset])
        return half_life, prior, discount, weights

    def objective(x: np.ndarray) -> float:
        half_life, prior, discount, weights = unpack(x)
        raw = _raw(data, half_life, prior, discount, weights, base_rates)
        ridge = RIDGE * float(np.sum(np.log(weights[fitted_kinds]) ** 2)) if fitted_kinds else 0.0
        return log_loss(raw, data.holds) + ridge

    result = minimize(objective, np.array(x0), method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": max_iterations})
    half_life, prior, discount, weights = unpack(result.x)
    return replace(start, half_life_days=half_life, prior=prior, repeat_discount=discount,
                   kind_weights={str(data.kind_names[k]): float(weights[k]) for k in range(len(data.kind_names))
                                 if k in fitted_kinds or data.kind_names[k] in start.kind_weights},
                   calibration=CalibrationMap())


def fit_map(raw: np.ndarray, holds: np.ndarray) -> CalibrationMap:
    """Beta calibration fitted by log loss, a and b kept >= 0 so the map is monotone."""
    x = np.clip(raw, RAW_FLOOR, 1.0 - RAW_FLOOR)
    features = np.column_stack([np.log(x), -np.log1p(-x)])

    def objective(theta: np.ndarray) -> float:
        z = features @ theta[:2] + theta[2]
        p = np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))
        return log_loss(p, holds)

    result = minimize(objective, np.array([1.0, 1.0, 0.0]), method="L-BFGS-B",
                      bounds=[(0.0, 20.0), (0.0, 20.0), (-20.0, 20.0)])
    a, b, c = (float(v) for v in result.x)
    return CalibrationMap(a, b, c)


def estimate_base_rates(supported: dict[str, int], groups: int) -> dict[str, float]:
    """pi per value: the share of judged (cutoff, user, key) windows where the value held, shrunk towards 0
    by one pseudo-window and kept below 0.95 (a base rate is never certainty)."""
    if groups <= 0:
        return {}
    return {value: min(count / (groups + 1), 0.95) for value, count in sorted(supported.items()) if count > 0}


def bootstrap_interval(probability: np.ndarray, holds: np.ndarray, users: np.ndarray, resamples: int,
                       alpha: float, seed: int, statistic=calibration_error) -> tuple[float | None, float | None]:
    """A percentile interval of `statistic` over users resampled with replacement."""
    if probability.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    unique, members = np.unique(users, return_inverse=True)
    order = np.argsort(members, kind="stable")
    starts = np.searchsorted(members[order], np.arange(unique.size))
    ends = np.append(starts[1:], order.size)
    values = []
    for _ in range(resamples):
        chosen = rng.integers(0, unique.size, unique.size)
        index = np.concatenate([order[starts[u]:ends[u]] for u in chosen])
        values.append(statistic(probability[index], holds[index]))
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)
