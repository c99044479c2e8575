"""The success bar: suite thresholds, per key family thresholds with min_judged, and the committed file."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from selfmodel.evals.bar import Bar, load_bar
from tests.conftest import REPO_ROOT

PER_KEY_BAR = {"suites": {"predictive": {"ece": {"max": 0.10},
                                         "per_key": {"min_judged": 100, "ece": {"max": 0.05}}}}}


def family(judged: int, ece: float | None, **more) -> dict:
    return {"beliefs_judged": judged, "ece": ece, **more}


def test_a_family_under_min_judged_is_too_small_to_judge_and_neither_passes_nor_fails() -> None:
    bar = Bar.model_validate(PER_KEY_BAR)
    passed, checks = bar.verdict("predictive", {"ece": 0.02}, {"language": family(31, 0.21), "topic": family(1037, 0.04)})
    assert passed  # language's 0.21 does not fail the suite: 31 judgements cannot say
    assert checks["ece[language]"]["passed"] is None and checks["ece[language]"]["status"] == "too_small"
    assert checks["ece[language]"]["judged"] == 31 and checks["ece[language]"]["value"] == 0.21
    assert checks["ece[topic]"]["passed"] is True and "status" not in checks["ece[topic]"]


def test_a_family_over_min_judged_fails_the_suite_when_its_ece_is_above_the_max() -> None:
    bar = Bar.model_validate(PER_KEY_BAR)
    passed, checks = bar.verdict("predictive", {"ece": 0.021},  # the pooled ECE passes ...
                                 {"expertise": family(507, 0.167), "topic": family(1037, 0.04)})
    assert not passed  # ... but expertise, with enough judgements, is off by 0.167
    assert checks["ece[expertise]"] == {"op": "<=", "threshold": 0.05, "value": 0.167, "passed": False,
                                        "family": "expertise", "judged": 507}
    assert Bar.model_validate(PER_KEY_BAR).verdict("predictive", {"ece": 0.021},
                                                   {"expertise": family(100, 0.05)})[0]  # at the edges: passes


def test_too_small_is_never_a_pass() -> None:
    only_per_key = Bar.model_validate({"suites": {"predictive": {"per_key": {"min_judged": 100, "ece": {"max": 0.05}}}}})
    passed, checks = only_per_key.verdict("predictive", {}, {"language": family(31, 0.01)})
    assert not passed and checks["ece[language]"]["status"] == "too_small"  # nothing judged: nothing passed
    assert only_per_key.verdict("predictive", {}, {"language": family(300, 0.01)})[0]


def test_a_run_below_the_suites_min_judged_is_too_small_to_judge_and_not_a_pass() -> None:
    bar = Bar.model_validate({"suites": {"enrichment": {
        "min_judged": 30, "enrichment_win_rate": {"min": 0.55}, "over_enrichment_rate": {"max": 0.1}}}})
    assert bar.suites["enrichment"].min_judged == 30 and set(bar.suites["enrichment"].thresholds) == {
        "enrichment_win_rate", "over_enrichment_rate"}
    passed, checks = bar.verdict("enrichment", {"judged": 12, "enrichment_win_rate": 1.0, "over_enrichment_rate": 0.0})
    assert not passed  # twelve perfect judgements are still too few to call it a pass
    assert all(c["passed"] is None and c["status"] == "too_small" and c["judged"] == 12 and c["min_judged"] == 30
               for c in checks.values())
    assert checks["enrichment_win_rate"]["value"] == 1.0
    passed, checks = bar.verdict("enrichment", {"judged": 30, "enrichment_win_rate": 0.6, "over_enrichment_rate": 0.0})
    assert passed and all(c["passed"] and "status" not in c for c in checks.values())
    assert not bar.verdict("enrichment", {"judged": 30, "enrichment_win_rate": 0.5, "over_enrichment_rate": 0.0})[0]
    with pytest.raises(ValidationError):
        Bar.model_validate({"suites": {"enrichment": {"min_judged": 0, "enrichment_win_rate": {"min": 0.55}}}})


def test_per_family_overrides_add_to_the_shared_thresholds() -> None:
    bar = Bar.model_validate({"suites": {"predictive": {"per_key": {
        "min_judged": 10, "ece": {"max": 0.05}, "families": {"topic": {"precision_at_threshold": {"min": 0.5}}}}}}})
    per_key = {"topic": family(50, 0.04, precision_at_threshold=0.466), "expertise": family(50, 0.04)}
    passed, checks = bar.verdict("predictive", {}, per_key)
    assert not passed and checks["precision_at_threshold[topic]"]["passed"] is False
    assert "precision_at_threshold[expertise]" not in checks and checks["ece[expertise]"]["passed"]


def test_the_bar_stays_strict() -> None:
    for wrong in ({"suites": {"predictive": {"per_key": {"min_judged": 100, "ece": {"max": 0.05}, "typo": 3}}}},
                  {"suites": {"predictive": {"per_key": {"min_judged": 0}}}},
                  {"suites": {"predictive": {"ece": {"max": 0.1, "min": 0.0}}}},
                  {"suites": {}, "per_key": {}}):
        with pytest.raises(ValidationError):
            Bar.model_validate(wrong)


def test_a_suite_the_bar_does_not_name_fails_and_the_committed_bar_loads() -> None:
    bar = load_bar(REPO_ROOT / "expectations" / "bar.yaml")
    assert bar.verdict("labeled_unknown", {"case_pass_rate": 1.0}) == (False, {})
    written = yaml.safe_load((REPO_ROOT / "expectations" / "bar.yaml").read_text())
    assert written["suites"]["predictive"]["per_key"] == {"min_judged": 1000, "ece": {"max": 0.05}}
    passed, checks = bar.verdict("labeled_qc", {"case_pass_rate": 0.75})
    assert passed and list(checks) == ["case_pass_rate"]


def test_a_family_too_small_to_judge_alerts_no_one() -> None:
    from selfmodel.alerts import SuiteOutcome

    bar = Bar.model_validate(PER_KEY_BAR)
    passed, checks = bar.verdict("predictive", {"ece": 0.02}, {"language": family(31, 0.21), "topic": family(500, 0.09)})
    outcome = SuiteOutcome.from_run({"run_id": "r1", "bar": checks, "regressions": [], "metrics": {}},
                                    reproduce_sql="select 1")
    assert not passed and [f.metric for f in outcome.bar_failures] == ["ece[topic]"]


def test_the_committed_min_judged_is_above_the_noise_floor_of_its_ece_threshold() -> None:
    """A per-family ECE bar must be passable by a perfectly calibrated family of min_judged judgements and not by
    one of a tenth of that: otherwise it judges the sample size, not the confidence (the bar.yaml comment)."""
    import numpy as np

    from selfmodel.evals.metrics import Judgement, expected_calibration_error

    per_key = load_bar(REPO_ROOT / "expectations" / "bar.yaml").suites["predictive"].per_key
    threshold = per_key.thresholds["ece"].max

    def failing_share(judged: int, trials: int = 150) -> float:
        rng = np.random.default_rng(judged)
        failures = 0
        for _ in range(trials):
            confidence = rng.beta(2, 2, judged)
            holds = rng.random(judged) < confidence  # calibrated by construction
            ece = expected_calibration_error([Judgement("u", "topic", float(c), bool(h)) for c, h in zip(confidence, holds)])
            failures += ece > threshold
        return failures / trials

    assert failing_share(per_key.min_judged) <= 0.10
    assert failing_share(max(per_key.min_judged // 7, 1)) >= 0.9
