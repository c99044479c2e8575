"""Run the eval suites, judge them against the success bar and the last passing run, store everything.

Suites:
- `predictive`: beliefs at several cutoffs checked against what users did next (selfmodel.evals.predictive);
- `labeled_<name>`: the committed case files in expectations/evals/labeled_*.yaml;
- `demo_vs_production`: the predictive metrics on the hand-picked demo users beside a random sample of
  active users, and the gap between them (skipped when no demo user is active in the evaluation windows);
- `enrichment`: an LLM judge of answers to held-out queries with and without the enrichment
  (selfmodel.evals.enrichment). It needs the `llm` endpoint and costs money, so it runs only when asked for
  (`--suite enrichment`) or when `eval.enrichment.enabled`; without an endpoint it is skipped.

Each run is one `eval_runs` row (metrics, the bar's verdict, regressions, code version, config hash,
data as-of) plus `eval_results` rows per case or slice, so any metric can be charted over time.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml

from selfmodel.beliefs.refresh import refuse_future_as_of
from selfmodel.clock import Clock, SystemClock
from selfmodel.evals import enrichment, labeled, predictive
from selfmodel.evals.bar import Bar, load_bar
from selfmodel.evals.regression import case_regression, ratio_regression
from selfmodel.settings import Settings
from selfmodel.version import code_version
from warehouse.db import execute, run, run_dicts

log = logging.getLogger("selfmodel.evals")

PREDICTIVE = "predictive"
DEMO_VS_PRODUCTION = "demo_vs_production"
ENRICHMENT = enrichment.SUITE


@dataclass
class SuiteRun:
    suite: str
    passed: bool
    metrics: dict[str, Any]
    bar: dict[str, dict]
    regressions: list[dict] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)
    run_id: str | None = None
    skipped: str | None = None  # why the suite did not run (e.g. its source has no data)
    details: dict[str, Any] = field(default_factory=dict)  # reliability, learning curve, per key, cases
    results: list[tuple[str, str, float | None]] = field(default_factory=list)  # (case_id, metric, value)

    def to_json(self) -> dict:
        payload = asdict(self)
        payload.pop("results")
        return payload


def eval_folder(settings: Settings) -> Path:
    return settings.resolve(settings.eval.path)


def case_files(settings: Settings) -> list[Path]:
    return sorted((eval_folder(settings) / "evals").glob("labeled_*.yaml"))


def available_suites(settings: Settings) -> list[str]:
    return [PREDICTIVE, *(labeled.load_case_file(p).suite for p in case_files(settings)), DEMO_VS_PRODUCTION,
            ENRICHMENT]


def default_suites(settings: Settings) -> list[str]:
    """The suites a run without `--suite` runs: all but the enrichment judge, unless it is enabled (it calls a
    paid endpoint; the offline path never needs one)."""
    return [s for s in available_suites(settings) if s != ENRICHMENT or settings.eval.enrichment.enabled]


def _enrichment_run(con, settings: Settings, started: datetime, clock: Clock, as_of: datetime | None,
                    budget) -> SuiteRun:
    result = enrichment.run_enrichment(con, settings, started, clock, as_of, budget)
    if result.skipped:
        return SuiteRun(ENRICHMENT, False, {}, {}, skipped=result.skipped)
    return SuiteRun(ENRICHMENT, False, result.metrics, {}, details=result.details, results=result.results)


def _predictive_runs(con, settings: Settings, wanted: set[str], as_of: datetime | None = None) -> list[SuiteRun]:
    data = predictive.load_predictive_data(con, settings, as_of)
    threshold = settings.beliefs.serving_threshold
    runs = []
    if data is None:
        return [SuiteRun(s, False, {}, {}, skipped="the warehouse has no events") for s in sorted(wanted)]
    newest = data.windows[0]
    window = {"cutoff": newest.cutoff.isoformat(), "horizon_end": newest.horizon_end.isoformat(),
              "cutoffs": [_cutoff_details(data, w) for w in data.windows],
              "skipped_cutoffs": [c.isoformat() for c in data.skipped_cutoffs]}
    if PREDICTIVE in wanted:
        everyone = predictive.subset_metrics(data.judgements, data.active_users, threshold,
                                             settings.eval.bootstrap_resamples, settings.eval.predictive.seed,
                                             1 - settings.eval.alpha)
        runs.append(SuiteRun(PREDICTIVE, False, everyone.metrics | predictive.pooled_topic_top1(data), {},
                             details={**window, **_subset_details(everyone),
                                      "topic_top1": {c.isoformat(): asdict(t) for c, t in data.topic_top1.items()}},
                             results=_subset_results(everyone, data.active_users, threshold)))
    if DEMO_VS_PRODUCTION in wanted:
        runs.append(_demo_vs_production(settings, data, window, threshold))
    return runs


def _cutoff_details(data: predictive.PredictiveData, window: predictive.Window) -> dict:
    return {"cutoff": window.cutoff.isoformat(), "horizon_end": window.horizon_end.isoformat(),
            "beliefs_judged": sum(1 for j in data.judgements if j.cutoff == window.cutoff),
            "active_users": sum(1 for cutoff, _ in data.active_users if cutoff == window.cutoff)}


def _subset_details(subset: predictive.SubsetMetrics) -> dict:
    return {"per_key": {k: {**v, "reliability": subset.per_key_reliability[k]} for k, v in subset.per_key.items()},
            "reliability": subset.reliability, "learning_curve": subset.learning_curve}


def _user_results(subset: predictive.SubsetMetrics) -> list[tuple[str, str, float | None]]:
    """Per user, summed over the cutoffs: beliefs that held and beliefs served (regressions resample these)."""
    results = [(f"user:{u}", "held", float(h)) for u, (h, _) in subset.per_user.items()]
    return results + [(f"user:{u}", "served", float(s)) for u, (_, s) in subset.per_user.items()]


def _subset_results(subset: predictive.SubsetMetrics, active_users: dict, threshold: float
                    ) -> list[tuple[str, str, float | None]]:
    results = _user_results(subset)
    active: dict[str, list[float]] = {}  # user -> [cutoffs active, cutoffs enriched]
    for (_, user), best in active_users.items():
        counts = active.setdefault(user, [0.0, 0.0])
        counts[0] += 1
        counts[1] += best is not None and best >= threshold
    results += [(f"user:{u}", "enriched", enriched) for u, (_, enriched) in active.items()]
    results += [(f"user:{u}", "active", cutoffs) for u, (cutoffs, _) in active.items()]
    for key, values in subset.per_key.items():
        results += [(f"key={key}", metric, value) for metric, value in values.items()]
        results += [(f"key_reliability={key}:{row['bin']}", m, row[m]) for row in subset.per_key_reliability[key]
                    for m in ("mean_confidence", "observed_rate", "count")]
    for row in subset.reliability:
        results += [(f"reliability:{row['bin']}", m, row[m]) for m in ("mean_confidence", "observed_rate", "count")]
    for curve, rows in subset.learning_curve.items():
        results += [(f"{curve}:{row['bucket']}", m, row[m]) for row in rows for m in ("precision", "served", "users")]
    return results


def _demo_vs_production(settings: Settings, data: predictive.PredictiveData, window: dict, threshold: float
                        ) -> SuiteRun:
    """The demo users beside a random sample of active users; skipped when no demo user is in the windows."""
    demo_file = eval_folder(settings) / "evals" / "demo_users.yaml"
    listed = set(map(str, (yaml.safe_load(demo_file.read_text()) or {}).get("users", []))) if demo_file.exists() else set()
    demo_users = listed & data.users
    if not demo_users:
        why = (f"{demo_file.name} is absent" if not demo_file.exists() else f"{demo_file.name} lists none"
               if not listed else f"none of the {len(listed)} in {demo_file.name} is active in the evaluation windows")
        return SuiteRun(DEMO_VS_PRODUCTION, False, {}, {}, skipped=f"no demo users: {why}")
    sample = set(predictive.production_sample(data.users, settings.eval.predictive.production_sample,
                                              settings.eval.predictive.seed))
    demo = predictive.subset_metrics(*predictive.restrict(data, demo_users), threshold)
    production = predictive.subset_metrics(*predictive.restrict(data, sample), threshold)
    metrics = {f"demo_{k}": v for k, v in demo.metrics.items()}
    metrics |= {f"production_{k}": v for k, v in production.metrics.items()}
    demo_precision = demo.metrics["precision_at_threshold"]
    production_precision = production.metrics["precision_at_threshold"]
    metrics["precision_gap"] = (demo_precision - production_precision
                                if demo_precision is not None and production_precision is not None else None)
    return SuiteRun(DEMO_VS_PRODUCTION, False, metrics, {}, details={
        **window, "demo_users": sorted(listed), "production_sample_size": len(sample),
        "demo_learning_curve": demo.learning_curve, "production_learning_curve": production.learning_curve},
        results=_user_results(production))


def _labeled_runs(con, settings: Settings, wanted: set[str]) -> list[SuiteRun]:
    runs = []
    for path in case_files(settings):
        case_file = labeled.load_case_file(path)
        if case_file.suite not in wanted:
            continue
        if not labeled.has_source_data(con, case_file.source):
            runs.append(SuiteRun(case_file.suite, False, {}, {},
                                 skipped=f"no events from source {case_file.source!r} in the warehouse"))
            continue
        results = [labeled.evaluate_case(con, settings, case_file.source, case) for case in case_file.cases]
        failed = [{"case": r.case_id, "checks": [c for c in r.checks if not c["passed"]]} for r in results if not r.passed]
        runs.append(SuiteRun(case_file.suite, False, labeled.labeled_metrics(results), {},
                             details={"file": str(path), "failed_cases": failed},
                             results=[(r.case_id, "passed", float(r.passed)) for r in results]))
    return runs


def _last_passing_results(con, suite: str) -> tuple[str, dict] | None:
    rows = con.execute(
        "select run_id, metrics from eval_runs where suite = ? and passed order by started_at desc limit 1", [suite]
    ).fetchall()
    if not rows:
        return None
    run_id, metrics = rows[0]
    return run_id, json.loads(metrics)


def _results_of(con, run_id: str) -> dict[tuple[str, str], float]:
    rows = con.execute("select case_id, metric, value from eval_results where run_id = ?", [run_id]).fetchall()
    return {(case, metric): value for case, metric, value in rows}


def detect_regressions(con, settings: Settings, bar: Bar, suite_run: SuiteRun) -> list[dict]:
    """Drops from the last passing run that exceed the tolerance and are statistically significant."""
    previous = _last_passing_results(con, suite_run.suite)
    if previous is None:
        return []
    previous_id, previous_metrics = previous
    before = _results_of(con, previous_id)
    after = {(case, metric): value for case, metric, value in suite_run.results}
    regressions = []
    for metric, tolerance in bar.regression_tolerance.items():
        old, new = previous_metrics.get(metric), suite_run.metrics.get(metric)
        if old is None or new is None or old - new <= tolerance:
            continue
        if metric == "case_pass_rate":
            finding = case_regression(_outcomes(before), _outcomes(after), tolerance, settings.eval.alpha)
        else:
            hits, trials = ("enriched", "active") if metric == "coverage" else ("held", "served")
            finding = ratio_regression(_per_user(before, hits, trials), _per_user(after, hits, trials), tolerance,
                                       settings.eval.alpha, settings.eval.bootstrap_resamples)
        if finding is not None:
            regressions.append({"metric": metric, "before": old, "after": new, "tolerance": tolerance,
                                "previous_run": previous_id, **{k: v for k, v in finding.items()
                                                                if k not in ("before", "after")}})
    return regressions


def _outcomes(results: dict[tuple[str, str], float]) -> dict[str, bool]:
    return {case: bool(value) for (case, metric), value in results.items() if metric == "passed"}


def _per_user(results: dict[tuple[str, str], float], hits: str, trials: str) -> dict[str, tuple[int, int]]:
    """Per user (hits, trials), summed over the backtest's cutoffs. A run stored before the backtest has no
    "active" count: it judged one cutoff, so each user it lists was active once."""
    users = {case for case, metric in results if metric == hits and case.startswith("user:")}
    return {u: (int(results[(u, hits)]), int(results.get((u, trials), 1))) for u in users}


def run_evals(con: duckdb.DuckDBPyConnection, settings: Settings, suites: list[str] | None = None,
              clock: Clock | None = None, notify=None, as_of: datetime | None = None,
              budget=None, progress=None) -> list[SuiteRun]:
    """Run the suites (`default_suites` by default), judge them, store them; `notify(con, suite_run, clock)` is
    called per run.

    `as_of` evaluates a past night: the predictive suites see only events up to it (labeled cases carry
    their own as-of). `budget` (selfmodel.llm.budget.Budget): the enrichment judge's spending cap, to share one
    with the run's other LLM work; default: a budget of its own from `llm`. `progress(step, steps done, steps)`
    hears of each step as it starts and once more when all are done (a progress bar, a Prefect artifact).
    """
    progress = progress or (lambda step, done, total: None)
    clock = clock or SystemClock()
    refuse_future_as_of(as_of, settings, clock, what="the eval's as-of")  # a RefreshError, so a ValueError
    bar = load_bar(eval_folder(settings) / "bar.yaml")
    known = available_suites(settings)
    wanted = set(suites or default_suites(settings))
    unknown = wanted - set(known)
    if unknown:
        raise ValueError(f"unknown eval suite(s) {sorted(unknown)}; known: {known}")
    started = clock.now()
    steps = 3 + (ENRICHMENT in wanted)  # predictive, labeled, [enrichment], then judging and storing each run
    progress("predictive suites", 0, steps)
    suite_runs = _predictive_runs(con, settings, wanted & {PREDICTIVE, DEMO_VS_PRODUCTION}, as_of)
    progress("labeled suites", 1, steps)
    suite_runs += _labeled_runs(con, settings, wanted)
    if ENRICHMENT in wanted:
        progress("enrichment judge", 2, steps)
        suite_runs.append(_enrichment_run(con, settings, started, clock, as_of, budget))
    progress("judge, store and alert", steps - 1, steps)
    [(data_as_of,)] = run(con, "data_end", {"source": None, "as_of": as_of})
    for suite_run in suite_runs:
        if suite_run.skipped:
            continue
        suite_run.passed, suite_run.bar = bar.verdict(suite_run.suite, suite_run.metrics,
                                                      suite_run.details.get("per_key"))
        suite_run.regressions = detect_regressions(con, settings, bar, suite_run)
        suite_run.passed = suite_run.passed and not suite_run.regressions
        suite_run.run_id = f"{started:%Y%m%dT%H%M%S}-{suite_run.suite}-{uuid.uuid4().hex[:6]}"
        suite_run.details["data_as_of"] = data_as_of  # alerts say which data the verdict is about
        _store(con, settings, suite_run, started, clock.now(), data_as_of)
        if notify is not None:
            suite_run.alerts = notify(con, suite_run, clock) or []
    progress("done", steps, steps)
    return sorted(suite_runs, key=lambda r: r.suite)


def _store(con, settings: Settings, suite_run: SuiteRun, started: datetime, ended: datetime,
           data_as_of: datetime | None) -> None:
    execute(con, "begin transaction")
    try:
        run(con, "insert_eval_run", {
            "run_id": suite_run.run_id, "suite": suite_run.suite, "started_at": started, "ended_at": ended,
            "passed": suite_run.passed, "metrics": json.dumps(suite_run.metrics), "bar": json.dumps(suite_run.bar),
            "regressions": json.dumps(suite_run.regressions, default=str), "data_as_of": data_as_of,
            "code_version": code_version(), "config_hash": settings.config_hash(),
        })
        if suite_run.results:
            import pyarrow as pa

            cases, metrics, values = zip(*suite_run.results)
            con.register("new_eval_results", pa.table({
                "case_id": pa.array(cases, pa.string()), "metric": pa.array(metrics, pa.string()),
                "value": pa.array([None if v is None else float(v) for v in values], pa.float64())}))
            run(con, "insert_eval_results", {"run_id": suite_run.run_id, "suite": suite_run.suite})
            con.unregister("new_eval_results")
        execute(con, "commit")
    except Exception:
        execute(con, "rollback")
        raise


def metric_history(con: duckdb.DuckDBPyConnection, suite: str, metric: str, limit: int = 60) -> list[dict]:
    return run_dicts(con, "eval_metric_history", {"suite": suite, "metric": metric, "limit": limit})
