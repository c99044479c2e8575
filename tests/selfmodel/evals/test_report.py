"""The eval-report artifact: verdicts and the numbers behind the report's pictures, as markdown."""

from __future__ import annotations

from selfmodel.evals.report import per_key_table_lines, report_markdown
from selfmodel.nightly import bar_line, evaluate_step


def test_the_artifact_holds_verdicts_reliability_and_learning_curves() -> None:
    runs = [
        {"suite": "labeled_qc", "skipped": None, "passed": False, "details": {}},
        {"suite": "predictive", "skipped": None, "passed": True, "details": {
            "reliability": [{"bin": "0.6-0.7", "mean_confidence": 0.652, "observed_rate": 0.71, "count": 34},
                            {"bin": "0.9-1.0", "mean_confidence": None, "observed_rate": None, "count": 0}],
            "learning_curve": {"by_prior_interactions": [
                {"bucket": "1", "precision": None, "served": 0, "users": 5},
                {"bucket": "10+", "precision": 0.789, "served": 190, "users": 29}]}}},
        {"suite": "labeled_convai2", "skipped": "no events from source 'convai2'", "passed": False, "details": {}},
    ]
    markdown = report_markdown(runs, "/tmp/report.html", validations=4, blocking=1)
    assert "- **labeled_qc**: FAILED" in markdown and "- **labeled_convai2**: skipped" in markdown
    assert "`/tmp/report.html`" in markdown and "with blocking failures: 1" in markdown
    assert "| 0.6-0.7 | 0.652 | 0.710 | 34 |" in markdown and "| 0.9-1.0 | – | – | 0 |" in markdown
    assert "## Learning curve: by prior interactions" in markdown
    assert "| 10+ | 0.789 | 190 | 29 |" in markdown and "| 1 | – | 0 | 5 |" in markdown


def test_without_a_predictive_run_there_are_no_tables() -> None:
    markdown = report_markdown([{"suite": "predictive", "skipped": "no events", "passed": False, "details": {}}],
                               "r.html", validations=0, blocking=0)
    assert "- **predictive**: skipped" in markdown and "Reliability" not in markdown


PER_KEY = {
    "expertise": {"beliefs_judged": 507, "beliefs_served": 94, "precision_at_threshold": 0.947, "brier": 0.1,
                  "log_loss": 0.41, "ece": 0.167, "ece_low": 0.14, "ece_high": 0.19, "users": 60},
    "language": {"beliefs_judged": 31, "beliefs_served": 23, "precision_at_threshold": 1.0, "brier": 0.05,
                 "log_loss": 0.3, "ece": 0.21, "ece_low": 0.15, "ece_high": 0.27, "users": 30},
}
PER_KEY_CHECKS = {
    "ece": {"op": "<=", "threshold": 0.1, "value": 0.02, "passed": True},
    "ece[expertise]": {"op": "<=", "threshold": 0.05, "value": 0.167, "passed": False, "family": "expertise",
                       "judged": 507},
    "ece[language]": {"op": "<=", "threshold": 0.05, "value": 0.21, "passed": None, "family": "language",
                      "judged": 31, "status": "too_small", "min_judged": 100},
}


def test_the_per_family_table_shows_the_interval_and_the_verdict_per_family() -> None:
    header, expertise, language = per_key_table_lines(PER_KEY, PER_KEY_CHECKS)
    assert header.split()[:4] == ["key", "family", "judged", "served"]
    assert "0.167 [0.140, 0.190]" in expertise and "0.410" in expertise and "FAILED: ece 0.167 not <= 0.05" in expertise
    assert "too small to judge (< 100)" in language and "FAILED" not in language
    compact = per_key_table_lines(PER_KEY, PER_KEY_CHECKS, compact=True)
    assert "Brier" not in compact[0] and "log loss" in compact[0]


def test_the_nightly_evaluate_step_prints_the_per_family_table_and_too_small_is_no_failure() -> None:
    run = {"suite": "predictive", "skipped": None, "passed": False, "regressions": [], "bar": PER_KEY_CHECKS,
           "details": {"per_key": PER_KEY}}
    step = evaluate_step({"runs": [run], "validations": []}, 1.0)
    lines = step.detail.splitlines()
    assert lines[1] == "    predictive: ece 0.02 (<= 0.1)"  # the family checks are in the table, not here
    assert any("expertise" in line and "FAILED: ece 0.167" in line for line in lines)
    assert any("language" in line and "too small to judge" in line for line in lines)
    assert bar_line("ece[language]", PER_KEY_CHECKS["ece[language]"]) == "ece[language] 0.21 (<= 0.05) too small to judge"
