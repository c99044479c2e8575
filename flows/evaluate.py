"""The `evaluate` flow: data-quality expectations, eval suites against the bar, alerts, report."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from selfmodel.evals.report import report_markdown, verdict
from selfmodel.lock import run_writer_lock
from selfmodel.quality import data_docs_folder
from selfmodel.settings import find_config_path, load_settings
from tasks.evaluate import run_evals_task, validate_data_task, write_report_task
from tasks.prefect_ui import eval_events, link_artifact


@flow(name="evaluate", timeout_seconds=3600)
def evaluate(config_path: str | None = None, suites: list[str] | None = None, as_of: datetime | None = None,
             llm_spent_usd: float = 0.0) -> dict:
    """Validate the data, run the eval suites against the written success bar, alert owners on a regression.
    `llm_spent_usd`: spent on the language model earlier in the same run (the nightly's refresh), which the
    enrichment judge's budget leaves out."""
    config_path = str(Path(find_config_path(config_path)).resolve())
    settings = load_settings(config_path)
    with run_writer_lock(settings, "evaluate flow run"):
        validations = validate_data_task(config_path)
        runs = run_evals_task(config_path, suites, as_of, llm_spent_usd)
        report_path = write_report_task(config_path)
    create_table_artifact(
        key="eval-metrics",
        table=[{"suite": r["suite"], "verdict": verdict(r),
                **{metric: check["value"] for metric, check in r["bar"].items()},
                "regressions": len(r["regressions"]), "alerts": len(r["alerts"])} for r in runs],
        description="Eval suites against the success bar (expectations/bar.yaml)",
    )
    blocking = [v for v in validations if v["blocking_failures"]]
    create_markdown_artifact(
        key="eval-report",
        markdown=report_markdown(runs, report_path, len(validations), len(blocking)),
        description="Verdicts, reliability and learning curves; where the HTML eval report is",
    )
    link_artifact("eval-report-link", report_path, "Eval report (HTML)",
                  "The eval report this run wrote: verdicts, reliability, learning curves")
    data_docs = data_docs_folder(settings) / "index.html"
    link_artifact("data-docs-link", data_docs if data_docs.is_file() else None, "Data Docs (HTML)",
                  "Great Expectations Data Docs: the validation pages of the data-quality expectations")
    eval_events(runs)  # a regression or a failed bar: an event an automation can act on
    return {"validations": validations, "runs": runs, "report": report_path}
