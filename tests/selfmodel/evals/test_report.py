"""The eval-report artifact: verdicts and the numbers behind the report's pictures, as markdown."""

from __future__ import annotations

from selfmodel.evals.report import report_markdown


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
