"""Eval metrics and the regression rule: exact on small inputs, and false-alarm rates by simulation."""

from __future__ import annotations

import random

import pytest

from selfmodel.evals.metrics import (
    Judgement,
    brier,
    expected_calibration_error,
    learning_curve,
    mcnemar_p_value,
    precision,
    reliability,
)
from selfmodel.evals.regression import case_regression, ratio_regression


def j(confidence: float, holds: bool, prior: int = 3, days: float = 10, user: str = "u") -> Judgement:
    return Judgement(user, "topic", confidence, holds, prior, days)


def test_precision_brier_and_calibration_on_a_known_set() -> None:
    judgements = [j(0.9, True), j(0.9, True), j(0.9, False), j(0.3, False), j(0.3, True)]
    assert precision(judgements, 0.6) == (pytest.approx(2 / 3), 3)
    assert precision(judgements, 0.95) == (None, 0)
    assert brier(judgements) == pytest.approx((0.01 + 0.01 + 0.81 + 0.09 + 0.49) / 5)
    # bins: 0.3 (2 beliefs, half held), 0.9 (3 beliefs, two thirds held)
    assert expected_calibration_error(judgements) == pytest.approx(2 / 5 * 0.2 + 3 / 5 * abs(0.9 - 2 / 3))
    table = {row["bin"]: row for row in reliability(judgements)}
    assert table["0.9-1.0"]["count"] == 3 and table["0.3-0.4"]["observed_rate"] == 0.5
    assert sum(row["count"] for row in table.values()) == 5


def test_a_perfectly_calibrated_set_has_no_calibration_error() -> None:
    judgements = [j(0.75, i < 3) for i in range(4)] + [j(0.25, i < 1) for i in range(4)]
    assert expected_calibration_error(judgements) == pytest.approx(0.0)


def test_learning_curve_buckets_by_prior_interactions_and_days_known() -> None:
    judgements = [j(0.9, True, prior=1, days=0.5), j(0.9, False, prior=3, days=5), j(0.9, True, prior=12, days=40),
                  j(0.9, True, prior=12, days=40, user="v")]
    curves = learning_curve(judgements, 0.6)
    by_prior = {row["bucket"]: row for row in curves["by_prior_interactions"]}
    assert by_prior["1"]["precision"] == 1.0 and by_prior["2-4"]["precision"] == 0.0
    assert by_prior["5-9"]["precision"] is None and by_prior["10+"]["users"] == 2
    by_days = {row["bucket"]: row for row in curves["by_days_known"]}
    assert by_days["0-1 days"]["served"] == 1 and by_days["31+ days"]["served"] == 2


def test_mcnemar_counts_only_the_cases_that_changed() -> None:
    assert mcnemar_p_value([True] * 10, [True] * 10) == 1.0
    assert mcnemar_p_value([True] * 10, [False] * 10) == pytest.approx(2 / 2**10)
    assert mcnemar_p_value([True, False], [False, True]) == 1.0


def simulate_cases(rng: random.Random, abilities: list[float]) -> dict[str, bool]:
    return {f"case{i}": rng.random() < p for i, p in enumerate(abilities)}


def test_case_regressions_rarely_fire_on_unchanged_quality_and_catch_a_real_drop() -> None:
    rng = random.Random(1)
    abilities = [rng.choice([0.95, 0.9, 0.8, 0.6]) for _ in range(40)]
    trials = 300
    false_alarms = sum(
        case_regression(simulate_cases(rng, abilities), simulate_cases(rng, abilities), 0.05, 0.05) is not None
        for _ in range(trials))
    assert false_alarms / trials <= 0.05
    worse = [max(p - 0.5, 0.0) for p in abilities]
    caught = sum(case_regression(simulate_cases(rng, abilities), simulate_cases(rng, worse), 0.05, 0.05) is not None
                 for _ in range(100))
    assert caught >= 95


def simulate_users(rng: random.Random, rates: dict[str, float], served: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {u: (sum(rng.random() < rates[u] for _ in range(served[u])), served[u]) for u in rates}


def test_ratio_regressions_rarely_fire_on_unchanged_quality_and_catch_a_real_drop() -> None:
    rng = random.Random(2)
    rates = {f"u{i}": rng.uniform(0.5, 0.95) for i in range(80)}
    served = {u: rng.randint(1, 8) for u in rates}
    trials = 150
    false_alarms = sum(
        ratio_regression(simulate_users(rng, rates, served), simulate_users(rng, rates, served), 0.05, 0.05,
                         resamples=400, seed=t) is not None
        for t in range(trials))
    assert false_alarms / trials <= 0.05
    worse = {u: max(r - 0.25, 0.0) for u, r in rates.items()}
    caught = sum(
        ratio_regression(simulate_users(rng, rates, served), simulate_users(rng, worse, served), 0.05, 0.05,
                         resamples=400, seed=t) is not None
        for t in range(50))
    assert caught >= 45


def test_a_drop_within_tolerance_never_counts_however_significant() -> None:
    before = {f"c{i}": True for i in range(200)}
    after = dict(before) | {f"c{i}": False for i in range(8)}  # 4 % drop, p < 0.01
    assert case_regression(before, after, 0.05, 0.05) is None
    assert case_regression(before, after, 0.03, 0.05) is not None
