"""The fit (selfmodel.beliefs.calibration): it recovers a known model, its maps are monotone, and its
vectorised confidence is the model's."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from selfmodel.beliefs import calibration as fit
from selfmodel.beliefs.model import CalibrationMap, KeyPolicy, Observation, confidences, decayed_evidence

AT = datetime(2024, 6, 1, tzinfo=timezone.utc)


def synthetic_family(cardinality: str, half_life: float, prior: float, beliefs: int, seed: int,
                     values_per_group: int = 1) -> fit.FamilyData:
    """Beliefs whose holding is drawn from the model itself with a known half-life and prior: observations
    of weight 1 at random ages, then holds ~ Bernoulli(raw confidence)."""
    rng = np.random.default_rng(seed)
    groups = beliefs // values_per_group
    count = groups * values_per_group
    per_belief = rng.integers(1, 8, count)
    obs_belief = np.repeat(np.arange(count), per_belief)
    ages = rng.uniform(0, 4 * half_life, obs_belief.size)
    data = fit.FamilyData(
        cardinality=cardinality, holds=np.zeros(count), group=np.arange(count) // values_per_group,
        user=np.arange(count) // values_per_group, value=np.arange(count) % values_per_group,
        value_names=[f"v{i}" for i in range(values_per_group)], obs_belief=obs_belief, obs_age_days=ages,
        obs_weight=np.ones(obs_belief.size), obs_kind=np.zeros(obs_belief.size, dtype=int),
        obs_rank=np.zeros(obs_belief.size, dtype=int), kind_names=["k:message"])
    truth = fit.raw_confidence(data, KeyPolicy(cardinality, half_life, prior))
    data.holds = (rng.random(count) < truth).astype(float)
    return data


@pytest.mark.parametrize("cardinality, half_life, prior", [("many", 45.0, 3.0), ("one", 120.0, 1.5)])
def test_the_fit_recovers_a_known_half_life_and_prior_within_ten_percent(cardinality, half_life, prior) -> None:
    data = synthetic_family(cardinality, half_life, prior, beliefs=40_000, seed=11,
                            values_per_group=1 if cardinality == "many" else 2)
    start = KeyPolicy(cardinality, half_life_days=10.0, prior=10.0)  # far from the truth
    fitted = fit.fit_policy(data, start, fit_discount=False, fit_kinds=False)
    assert fitted.half_life_days == pytest.approx(half_life, rel=0.10)
    assert fitted.prior == pytest.approx(prior, rel=0.10)


def test_the_fit_lowers_the_weight_of_a_kind_of_evidence_that_predicts_nothing() -> None:
    rng = np.random.default_rng(5)
    data = synthetic_family("many", 30.0, 2.0, beliefs=20_000, seed=3)
    # Add noise observations of a second kind to half of the beliefs: they do not change whether it holds.
    noisy = np.flatnonzero(rng.random(data.holds.size) < 0.5)
    data.obs_belief = np.concatenate([data.obs_belief, noisy])
    data.obs_age_days = np.concatenate([data.obs_age_days, rng.uniform(0, 30, noisy.size)])
    data.obs_weight = np.concatenate([data.obs_weight, np.ones(noisy.size)])
    data.obs_kind = np.concatenate([data.obs_kind, np.ones(noisy.size, dtype=int)])
    data.obs_rank = np.concatenate([data.obs_rank, np.zeros(noisy.size, dtype=int)])
    data.kind_names = ["k:message", "k:noise"]
    fitted = fit.fit_policy(data, KeyPolicy("many", 30.0, 2.0), fit_discount=False)
    assert fitted.kind_weights["k:noise"] < 0.3 * fitted.kind_weights["k:message"]


def test_the_vectorised_confidence_is_the_model_s_with_every_fitted_part() -> None:
    policy = KeyPolicy("one", 20.0, 1.7, repeat_discount=0.6, kind_weights={"k:a": 2.0, "k:b": 0.5},
                       base_rates={"x": 0.3, "y": 0.1}, calibration=CalibrationMap(1.8, 0.4, 0.9))
    rng = random.Random(2)
    observations = [Observation(rng.choice("xyz"), rng.uniform(0.1, 2), AT - timedelta(days=rng.uniform(0, 60)),
                                kind=rng.choice(["k:a", "k:b", "k:c"]), unit=rng.choice(["u1", "u2", None]),
                                event_id=f"e{i}") for i in range(40)]
    expected = confidences(decayed_evidence(observations, AT, policy.half_life_days, policy), policy)
    values = sorted(expected)
    # the same observations, flattened as calibrate.load_family_data does (rank by time, then event id)
    ranks, seen = {}, {}
    for index in sorted(range(len(observations)), key=lambda i: (observations[i].observed_at, observations[i].event_id)):
        o = observations[index]
        unit = (o.value, o.unit or o.event_id)
        ranks[index] = seen.get(unit, 0)
        seen[unit] = ranks[index] + 1
    kinds = ["k:a", "k:b", "k:c"]
    data = fit.FamilyData(
        cardinality="one", holds=np.zeros(len(values)), group=np.zeros(len(values), dtype=int),
        user=np.zeros(len(values), dtype=int), value=np.arange(len(values)), value_names=values,
        obs_belief=np.array([values.index(o.value) for o in observations]),
        obs_age_days=np.array([(AT - o.observed_at).total_seconds() / 86400 for o in observations]),
        obs_weight=np.array([o.weight for o in observations]),
        obs_kind=np.array([kinds.index(o.kind) for o in observations]),
        obs_rank=np.array([ranks[i] for i in range(len(observations))]), kind_names=kinds)
    got = fit.confidence(data, policy)
    assert got == pytest.approx([expected[v] for v in values], rel=1e-9)
    assert sum(got) < 1


def test_fitted_calibration_maps_are_monotone() -> None:
    rng = np.random.default_rng(9)
    for _ in range(20):
        raw = rng.uniform(0.001, 0.999, 500)
        # whatever the data, even held against confidence, the map never turns downwards
        holds = (rng.random(500) < rng.choice([raw, 1 - raw, np.full(500, 0.3)])).astype(float)
        calibration = fit.fit_map(raw, holds)
        grid = np.linspace(1e-6, 1 - 1e-6, 2001)
        mapped = fit.apply_map(grid, calibration, np.arange(grid.size), "many")
        assert np.all(np.diff(mapped) >= -1e-12)
        assert calibration.a >= 0 and calibration.b >= 0
    with pytest.raises(ValueError):
        CalibrationMap(-0.1, 1.0, 0.0)


def test_a_map_fitted_on_overconfident_beliefs_pulls_them_down() -> None:
    rng = np.random.default_rng(4)
    raw = rng.uniform(0.05, 0.95, 20_000)
    holds = (rng.random(raw.size) < 0.5 * raw).astype(float)  # right half as often as claimed
    calibration = fit.fit_map(raw, holds)
    mapped = fit.apply_map(raw, calibration, np.arange(raw.size), "many")
    assert fit.calibration_error(raw, holds) > 0.2
    assert fit.calibration_error(mapped, holds) < 0.02


def test_the_bootstrap_interval_holds_the_estimate() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 3000)
    holds = (rng.random(3000) < p).astype(float)
    users = rng.integers(0, 300, 3000)
    low, high = fit.bootstrap_interval(p, holds, users, resamples=200, alpha=0.05, seed=3)
    assert low <= fit.calibration_error(p, holds) <= high
