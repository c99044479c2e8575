"""Eval metrics and the regression rule: exact on small inputs, and false-alarm rates by simulation."""

from __future__ import annotations

import math
import random

import pytest

from selfmodel.evals.metrics import (
    Judgement,
    brier,
    confidence_bin,
    ece_interval,
    expected_calibration_error,
    learning_curve,
    log_loss,
    mcnemar_p_value,
    precision,
    reliability,
)
from selfmodel.evals.predictive import family_metrics, subset_metrics
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


def test_log_loss_on_a_known_set_with_certainty_clipped() -> None:
    judgements = [j(0.9, True), j(0.9, False), j(0.25, False)]
    assert log_loss(judgements) == pytest.approx(-(math.log(0.9) + math.log(0.1) + math.log(0.75)) / 3)
    assert log_loss([j(1.0, False)]) == pytest.approx(-math.log(1e-6))  # a certain miss costs 13.8, not infinity
    assert log_loss([j(0.0, False)]) == pytest.approx(-math.log(1 - 1e-6))
    assert log_loss([]) is None


def test_each_key_family_gets_its_own_figures() -> None:
    def k(key: str, confidence: float, holds: bool, user: str) -> Judgement:
        return Judgement(user, key, confidence, holds)

    judgements = [k("topic", 0.9, True, "a"), k("topic", 0.9, False, "b"), k("topic", 0.3, False, "a"),
                  k("expertise@qubit", 0.7, True, "a"), k("expertise@gates", 0.7, True, "c")]
    subset = subset_metrics(judgements, {}, 0.6, resamples=200, seed=1)
    assert sorted(subset.per_key) == ["expertise", "topic"]
    topic = subset.per_key["topic"]
    assert (topic["beliefs_judged"], topic["beliefs_served"], topic["users"]) == (3, 2, 2)
    assert topic["precision_at_threshold"] == pytest.approx(0.5)
    assert topic["brier"] == pytest.approx((0.01 + 0.81 + 0.09) / 3)
    assert topic["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.1) + math.log(0.7)) / 3)
    assert topic["ece"] == pytest.approx(2 / 3 * abs(0.9 - 0.5) + 1 / 3 * 0.3)
    expertise = subset.per_key["expertise"]
    assert expertise["ece"] == pytest.approx(0.3) and expertise["brier"] == pytest.approx(0.09)
    assert expertise["log_loss"] == pytest.approx(-math.log(0.7)) and expertise["users"] == 2
    assert {row["bin"]: row["count"] for row in subset.per_key_reliability["topic"] if row["count"]} == {
        "0.3-0.4": 1, "0.9-1.0": 2}
    # the pooled figures cover every family
    assert subset.metrics["log_loss"] == pytest.approx(
        (3 * topic["log_loss"] + 2 * expertise["log_loss"]) / 5)
    assert family_metrics(judgements[:3], 0.6, 0, 0, 0.95)["ece_low"] is None  # no resamples, no interval


def test_confidence_bins_follow_the_edges_exactly() -> None:
    assert [confidence_bin(c) for c in (0.0, 0.1, 0.29999, 0.3, 0.7, 0.6999999, 0.95, 1.0)] == [0, 1, 2, 3, 7, 6, 9, 9]


def miscalibrated_users(rng: random.Random, users: int, per_user: int = 5) -> list[Judgement]:
    """Beliefs at 0.8 that hold 60 % of the time, and at 0.3 that hold 30 %: an ECE of about 0.1."""
    judgements = []
    for u in range(users):
        for _ in range(per_user):
            confidence = rng.choice([0.8, 0.3])
            rate = 0.6 if confidence == 0.8 else 0.3
            judgements.append(Judgement(f"u{u}", "topic", confidence, rng.random() < rate))
    return judgements


def test_the_ece_interval_over_users_holds_the_estimate_and_narrows_with_more_users() -> None:
    rng = random.Random(3)
    few, many = miscalibrated_users(rng, 30), miscalibrated_users(rng, 600)
    widths = []
    for judgements in (few, many):
        low, high = ece_interval(judgements, resamples=1000, seed=7, level=0.95)
        assert low <= expected_calibration_error(judgements) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 3  # twenty times the users: about a 4.5 times narrower interval
    assert ece_interval(few, 1000, 7, 0.95) == ece_interval(few, 1000, 7, 0.95)  # seeded
    assert ece_interval(few, 1000, 7, 0.5)[1] - ece_interval(few, 1000, 7, 0.5)[0] < widths[0]


def test_the_ece_interval_resamples_users_not_beliefs() -> None:
    """One user whose hundred beliefs all missed, among users whose beliefs held: resampling beliefs would
    give a narrow interval; resampling users sees that everything hangs on whether that one user is drawn."""
    judgements = [Judgement("loud", "topic", 0.8, False) for _ in range(100)]
    judgements += [Judgement(f"u{i}", "topic", 0.8, True) for i in range(20)]
    low, high = ece_interval(judgements, resamples=1000, seed=1, level=0.95)
    assert high - low > 0.3


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
