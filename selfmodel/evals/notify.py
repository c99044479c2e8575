"""From an eval run to the owners' inbox: what went wrong, the worst cases, and the SQL to see them."""

from __future__ import annotations

import json

import duckdb

from selfmodel.settings import Settings
from warehouse.db import run


def reproduce_sql(suite_run) -> str:
    run_id = suite_run.run_id
    if suite_run.suite.startswith("labeled"):
        return (f"select case_id from eval_results where run_id = '{run_id}' and metric = 'passed' and value = 0 "
                f"order by case_id;  -- then: selfmodel beliefs USER_ID --as-of <case as_of> --explain")
    return (f"select case_id, metric, value from eval_results where run_id = '{run_id}' "
            f"and (case_id like 'key=%' or case_id like 'by_%') order by case_id, metric;")


def worst_cases(suite_run) -> list[dict]:
    """Failed cases, the weakest keys and the users a regression hurt most; each case once."""
    cases = []
    for failed in suite_run.details.get("failed_cases", []):
        detail = "; ".join(
            f"{c['key']}={c.get('value')} confidence {c.get('confidence', 0):.2f} < {c.get('min_confidence')}"
            if not c.get("absent") else f"{c['key']} should be absent, found {', '.join(c.get('found', []))}"
            for c in failed["checks"])
        cases.append({"case_id": failed["case"], "detail": detail})
    per_key = suite_run.details.get("per_key", {})
    ranked = sorted(((v.get("precision_at_threshold"), k, v) for k, v in per_key.items()
                     if v.get("precision_at_threshold") is not None), key=lambda item: item[0])
    for value, key, values in ranked[:5]:
        cases.append({"case_id": f"key={key}",
                      "detail": f"precision {value:.2f} over {values.get('beliefs_served')} served beliefs"})
    for regression in suite_run.regressions:
        for case in regression.get("worst_cases", [])[:5]:
            cases.append({"case_id": str(case), "detail": f"worse on {regression['metric']} than run {regression['previous_run']}"})
    unique = {}
    for case in cases:
        unique.setdefault(case["case_id"], case)
    return list(unique.values())


def owner_alert_hook(settings: Settings):
    """A `notify(con, suite_run)` callback for run_evals that alerts the suite's owners once per incident."""

    def hook(con: duckdb.DuckDBPyConnection, suite_run, clock=None) -> list[dict]:
        from selfmodel.alerts import SuiteOutcome, notify

        previous = run(con, "last_passing_metrics", {"suite": suite_run.suite, "run_id": suite_run.run_id})
        record = {"run_id": suite_run.run_id, "bar": suite_run.bar, "regressions": suite_run.regressions,
                  "metrics": suite_run.metrics, "data_as_of": suite_run.details.get("data_as_of")}
        outcome = SuiteOutcome.from_run(record, before=json.loads(previous[0][0]) if previous else None,
                                        worst_cases=worst_cases(suite_run), reproduce_sql=reproduce_sql(suite_run))
        return [alert.to_json() for alert in notify(con, settings, suite_run.suite, outcome, clock)]

    return hook
