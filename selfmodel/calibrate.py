"""`selfmodel calibrate`: fit the belief model per key family to the warehouse's own history (docs/reference.md
"Calibration").

Windows are laid out backwards from the evaluation's earliest cutoff, so the fit never sees what the
evaluation judges: validation windows end there, training windows end where validation begins. Per family,
half-life, prior, repeat discount and kind weights are fitted on the training windows (log loss of "the
belief holds in the next window"), population base rates are counted there, and a beta calibration map
is fitted on top. A family's fit is adopted only when it lowers the log loss on the validation windows
against the parameters in force. Every run that writes is a `calibration_runs` row; an adoption is a
`calibration_adoptions` row, and the next refresh re-folds every belief with the new parameters.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from selfmodel.beliefs import calibration as fit
from selfmodel.beliefs import parameters as beliefs_parameters
from selfmodel.beliefs.model import KeyPolicy
from selfmodel.beliefs.refresh import refuse_future_as_of
from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import Settings
from selfmodel.version import code_version
from warehouse.db import execute, load_sql, run, run_dicts

log = logging.getLogger("selfmodel.calibrate")

TRAIN, VALIDATION = "train", "validation"
# A fit must lower validation log loss by more than this to be adopted: refitting from the parameters in force
# finds them again up to the optimiser's rounding, and that is no reason for a new calibration, a re-fold and
# a snapshot with other digits.
MIN_IMPROVEMENT = 1e-6


class CalibrationLeak(RuntimeError):
    """The fit was about to read something from the evaluation's windows: refused, nothing fitted."""


@dataclass(frozen=True)
class Window:
    cutoff: datetime
    horizon_end: datetime
    split: str  # train | validation


@dataclass(frozen=True)
class WindowPlan:
    data_end: datetime
    evaluation_from: datetime  # the evaluation's earliest cutoff: the fit reads nothing after it
    windows: tuple[Window, ...]

    def of(self, split: str) -> list[Window]:
        return [w for w in self.windows if w.split == split]


def evaluation_cutoffs(data_end: datetime, settings: Settings) -> list[datetime]:
    """The predictive eval's backtest cutoffs for this data end, newest first."""
    from selfmodel.evals.predictive import backtest_cutoffs

    options = settings.eval.predictive
    return backtest_cutoffs(data_end, options.cutoff_days, options.backtest_every_days, options.backtest_cutoffs)


def plan_windows(data_end: datetime, data_start: datetime, settings: Settings) -> WindowPlan:
    """Validation windows ending at the evaluation's earliest cutoff, training windows before them; windows
    whose cutoff precedes the first event (nothing believed yet) are left out."""
    from selfmodel.evals.predictive import cutoffs_back

    horizon = timedelta(days=settings.eval.predictive.horizon_days)
    every_days = settings.calibration.every_days
    evaluation_from = min(evaluation_cutoffs(data_end, settings))
    try:
        validation = cutoffs_back(evaluation_from - horizon, every_days, settings.calibration.validation_windows)
        train = cutoffs_back(min(validation) - horizon, every_days, settings.calibration.train_windows)
    except OverflowError:  # the evaluation's cutoffs reach back to the calendar's start: no room before them
        validation, train = [], []
    windows = [Window(c, c + horizon, split) for split, cutoffs in ((TRAIN, train), (VALIDATION, validation))
               for c in sorted(cutoffs) if c > data_start]
    return WindowPlan(data_end, evaluation_from, tuple(windows))


def refuse_leaks(plan: WindowPlan) -> None:
    """Every window must end by the evaluation's earliest cutoff, and training must end before validation."""
    late = [w for w in plan.windows if w.horizon_end > plan.evaluation_from]
    if late:
        raise CalibrationLeak(
            f"a {late[0].split} window ends at {late[0].horizon_end.isoformat()}, after the evaluation's earliest "
            f"cutoff {plan.evaluation_from.isoformat()}: the fit would read what the evaluation judges; "
            "nothing was fitted")
    validation = plan.of(VALIDATION)
    if validation and any(w.horizon_end > min(v.cutoff for v in validation) for w in plan.of(TRAIN)):
        raise CalibrationLeak("a training window overlaps the validation windows: nothing was fitted")


@dataclass
class FamilyResult:
    family: str
    status: str  # adopted | not_better | too_small | no_validation | not_seen | excluded
    judged_train: int = 0
    judged_validation: int = 0
    before: dict = field(default_factory=dict)
    fitted: dict | None = None
    train_log_loss_before: float | None = None
    train_log_loss_after: float | None = None
    validation_log_loss_before: float | None = None
    validation_log_loss_after: float | None = None
    validation_ece_before: float | None = None
    validation_ece_after: float | None = None
    validation_ece_interval_after: tuple[float | None, float | None] = (None, None)


@dataclass
class CalibrationReport:
    calibration_id: str | None
    dry_run: bool
    data_end: datetime | None
    evaluation_from: datetime | None
    windows: list[dict]
    families: list[FamilyResult]
    adopted: bool = False
    reason: str | None = None  # why nothing could be fitted

    def to_json(self) -> dict:
        return {"calibration_id": self.calibration_id, "dry_run": self.dry_run,
                "data_end": self.data_end.isoformat() if self.data_end else None,
                "evaluation_from": self.evaluation_from.isoformat() if self.evaluation_from else None,
                "windows": self.windows, "adopted": self.adopted, "reason": self.reason,
                "families": [asdict(f) for f in self.families]}


def _cutoffs_table(plan: WindowPlan) -> pa.Table:
    return pa.table({
        "cutoff": pa.array([w.cutoff for w in plan.windows], pa.timestamp("us", tz="UTC")),
        "horizon_end": pa.array([w.horizon_end for w in plan.windows], pa.timestamp("us", tz="UTC")),
        "split": pa.array([w.split for w in plan.windows], pa.string()),
    })


def load_family_data(con: duckdb.DuckDBPyConnection, settings: Settings, plan: WindowPlan,
                     parameters: beliefs_parameters.ParameterSet) -> tuple[dict[str, fit.FamilyData], dict]:
    """Every family's judged beliefs at the plan's cutoffs with their evidence, and the training windows'
    base-rate counts. Refuses a plan that reaches into the evaluation's windows, and checks what it read."""
    refuse_leaks(plan)
    fit_end = plan.evaluation_from
    source = settings.eval.predictive.source
    con.register("calibration_cutoffs", _cutoffs_table(plan))
    try:
        with beliefs_parameters.registered(con, parameters):
            execute(con, "create or replace temp table calibration_candidates as "
                    + load_sql("calibration_candidates"), {"fit_end": fit_end, "source": source})
            base_rate_rows = run_dicts(con, "calibration_base_rates", {"fit_end": fit_end, "source": source})
        candidates = con.sql("select * from calibration_candidates order by belief_index").to_arrow_table()
        evidence = con.sql(load_sql("calibration_evidence"), params={"fit_end": fit_end}).to_arrow_table()
    finally:
        con.unregister("calibration_cutoffs")
        execute(con, "drop table if exists calibration_candidates")
    if evidence.num_rows:
        latest = max(evidence.column("observed_at").to_pylist())
        if latest > fit_end:  # the SQL bounds it; a change that loosened it must not go unnoticed
            raise CalibrationLeak(f"evidence observed at {latest.isoformat()} was read, after the evaluation's "
                                  f"earliest cutoff {fit_end.isoformat()}: nothing was fitted")
    base_rates: dict[str, tuple[dict[str, int], int]] = {}
    for row in base_rate_rows:
        counts, _ = base_rates.setdefault(row["family"], ({}, row["groups"]))
        counts[row["value"]] = row["held"]
    return _family_arrays(candidates, evidence, parameters), base_rates


def _family_arrays(candidates: pa.Table, evidence: pa.Table, parameters: beliefs_parameters.ParameterSet
                   ) -> dict[str, fit.FamilyData]:
    c = {name: np.array(candidates.column(name).to_pylist(), dtype=object) for name in candidates.column_names}
    e = {name: np.array(evidence.column(name).to_pylist(), dtype=object) for name in evidence.column_names}
    families: dict[str, fit.FamilyData] = {}
    for family in sorted(set(c["family"].tolist()) if candidates.num_rows else []):
        members = np.flatnonzero(c["family"] == family)
        first = members.min()
        group_keys = [(c["cutoff"][i], c["user_id"][i], c["key"][i]) for i in members]
        _, group = np.unique(np.array([f"{t.isoformat()}|{u}|{k}" for t, u, k in group_keys]), return_inverse=True)
        _, user = np.unique(c["user_id"][members].astype(str), return_inverse=True)
        value_names, value = np.unique(c["value"][members].astype(str), return_inverse=True)
        value_names = [str(v) for v in value_names]
        on = np.flatnonzero(e["family"] == family) if evidence.num_rows else np.zeros(0, dtype=int)
        kind_names, kind = (np.unique(e["kind"][on].astype(str), return_inverse=True) if on.size
                            else ([], np.zeros(0, int)))
        families[family] = fit.FamilyData(
            cardinality=parameters.policies[family].cardinality,
            holds=c["holds"][members].astype(float), group=group, user=user, value=value,
            value_names=value_names,
            obs_belief=(e["belief_index"][on].astype(int) - first),
            obs_age_days=e["age_days"][on].astype(float), obs_weight=e["weight"][on].astype(float),
            obs_kind=np.asarray(kind, dtype=int), obs_rank=e["unit_rank"][on].astype(int),
            kind_names=[str(k) for k in kind_names], split=c["split"][members].astype(str))
    return families


def fit_family(family: str, data: fit.FamilyData, before: KeyPolicy,
               base_rate_counts: tuple[dict[str, int], int] | None, settings: Settings) -> FamilyResult:
    train, validation = data.subset(data.split == TRAIN), data.subset(data.split == VALIDATION)
    result = FamilyResult(family, "too_small", train.judged, validation.judged,
                          before=beliefs_parameters.policy_to_json(before))
    if train.judged:
        result.train_log_loss_before = fit.log_loss(fit.confidence(train, before), train.holds)
    if validation.judged:
        before_validation = fit.confidence(validation, before)
        result.validation_log_loss_before = fit.log_loss(before_validation, validation.holds)
        result.validation_ece_before = fit.calibration_error(before_validation, validation.holds)
    if train.judged < settings.calibration.min_judged:
        return result
    counts, groups = base_rate_counts or ({}, 0)
    start = replace(before, base_rates=fit.estimate_base_rates(counts, groups),
                    calibration=before.calibration.__class__())
    fitted = fit.fit_policy(train, start)
    fitted = replace(fitted, calibration=fit.fit_map(fit.raw_confidence(train, fitted), train.holds))
    result.fitted = beliefs_parameters.policy_to_json(fitted)
    result.train_log_loss_after = fit.log_loss(fit.confidence(train, fitted), train.holds)
    if validation.judged < settings.calibration.min_validation_judged:
        result.status = "no_validation"
        return result
    after_validation = fit.confidence(validation, fitted)
    result.validation_log_loss_after = fit.log_loss(after_validation, validation.holds)
    result.validation_ece_after = fit.calibration_error(after_validation, validation.holds)
    result.validation_ece_interval_after = fit.bootstrap_interval(
        after_validation, validation.holds, validation.user, settings.eval.bootstrap_resamples, settings.eval.alpha,
        seed=settings.eval.predictive.seed)
    improves = result.validation_log_loss_after < result.validation_log_loss_before - MIN_IMPROVEMENT
    result.status = "adopted" if improves else "not_better"
    return result


def calibrate(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: datetime | None = None,
              dry_run: bool = False, clock: Clock | None = None) -> CalibrationReport:
    """Fit, validate and (unless `dry_run`) record a calibration, adopting the families whose fit improves
    validation log loss. `as_of` sees only events up to then, as `eval --as-of` does."""
    clock = clock or SystemClock()
    refuse_future_as_of(as_of, settings, clock, what="the calibration's as-of")
    started = clock.now()
    [(data_end,)] = run(con, "data_end", {"source": settings.eval.predictive.source, "as_of": as_of})
    [(data_start,)] = run(con, "data_start", {"source": settings.eval.predictive.source})
    if data_end is None:
        return CalibrationReport(None, dry_run, None, None, [], [], reason="the warehouse has no events")
    plan = plan_windows(data_end, data_start, settings)
    windows = [{"split": w.split, "cutoff": w.cutoff.isoformat(), "horizon_end": w.horizon_end.isoformat()}
               for w in plan.windows]
    report = CalibrationReport(None, dry_run, data_end, plan.evaluation_from, windows, [])
    if not plan.of(TRAIN):
        report.reason = (f"no training window: the data begins {data_start.isoformat()}, after every training "
                         "cutoff; shorten calibration.every_days or eval.predictive.horizon_days, or the eval's "
                         "backtest (eval.predictive.backtest_cutoffs)")
        return report
    in_force = beliefs_parameters.in_force(con, settings)
    families, base_rates = load_family_data(con, settings, plan, in_force)
    for family, before in sorted(in_force.policies.items()):
        if family in settings.calibration.exclude:
            report.families.append(FamilyResult(family, "excluded", before=beliefs_parameters.policy_to_json(before)))
            continue
        if family not in families:
            report.families.append(FamilyResult(family, "not_seen", before=beliefs_parameters.policy_to_json(before)))
            continue
        report.families.append(fit_family(family, families[family], before, base_rates.get(family), settings))
    adopted = [f for f in report.families if f.status == "adopted"]
    report.adopted = bool(adopted)
    if dry_run:
        return report
    report.calibration_id = f"cal-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    _record(con, settings, report, plan, started, clock.now(), in_force)
    log.info("calibration %s: %d of %d families adopted", report.calibration_id, len(adopted), len(report.families))
    return report


def _record(con, settings: Settings, report: CalibrationReport, plan: WindowPlan, started: datetime,
            ended: datetime, in_force: beliefs_parameters.ParameterSet) -> None:
    """One calibration_runs row; when a family was adopted, a calibration_adoptions row putting it in force.
    Families not adopted now keep what was in force (their fitted values from an earlier calibration)."""
    _, previously_fitted = beliefs_parameters.adopted_calibration(con)
    parameters = {f.family: {"before": f.before, "fitted": f.fitted} for f in report.families}
    adopted_families = []
    for f in report.families:
        if f.status == "adopted":
            adopted_families.append(f.family)
        elif f.family in previously_fitted and f.status != "excluded":  # carried over: one adoption holds all
            parameters[f.family]["fitted"] = beliefs_parameters.policy_to_json(previously_fitted[f.family])
            adopted_families.append(f.family)
    figures = {f.family: {k: v for k, v in asdict(f).items() if k not in ("family", "before", "fitted")}
               for f in report.families}
    train, validation = plan.of(TRAIN), plan.of(VALIDATION)
    execute(con, "begin transaction")
    try:
        run(con, "insert_calibration_run", {
            "calibration_id": report.calibration_id, "started_at": started, "ended_at": ended,
            "data_as_of": plan.data_end,
            "train_from": min(w.cutoff for w in train), "train_to": max(w.horizon_end for w in train),
            "validation_from": min((w.cutoff for w in validation), default=plan.evaluation_from),
            "validation_to": max((w.horizon_end for w in validation), default=plan.evaluation_from),
            "evaluation_from": plan.evaluation_from,
            "parameters": json.dumps(parameters), "figures": json.dumps(figures, default=str),
            "adopted": report.adopted, "families_adopted": sorted(adopted_families),
            "config_hash": settings.config_hash(), "code_version": code_version(),
        })
        if report.adopted:
            beliefs_parameters.adopt(con, report.calibration_id, ended, "calibrate")
        execute(con, "commit")
    except Exception:
        execute(con, "rollback")
        raise


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _parameters(policy: dict) -> str:
    a, b, c = policy["map"]
    shown = "identity" if (a, b, c) == (1.0, 1.0, 0.0) else f"a={a:.2f} b={b:.2f} c={c:.2f}"
    return (f"half-life {policy['half_life_days']:.4g} d, prior {policy['prior']:.3g}, "
            f"repeat discount {policy['repeat_discount']:.2f}, map {shown}")


def calibration_table(report: CalibrationReport) -> list[str]:
    """The per-family table `calibrate` prints: train and validation log loss and validation ECE before ->
    after, then the parameters before and fitted (and the fitted kind weights)."""
    lines = [f"{'family':<16} {'status':<13} {'judged train/val':>16}  {'log loss train':>16}  {'log loss val':>16}  "
             f"{'ECE val':>16}"]
    for f in report.families:
        lines.append(
            f"{f.family:<16} {f.status:<13} {f.judged_train:>9}/{f.judged_validation:<6}  "
            f"{_number(f.train_log_loss_before):>6} -> {_number(f.train_log_loss_after):<6}  "
            f"{_number(f.validation_log_loss_before):>6} -> {_number(f.validation_log_loss_after):<6}  "
            f"{_number(f.validation_ece_before):>6} -> {_number(f.validation_ece_after):<6}")
        lines.append(f"{'':<16} before  {_parameters(f.before)}")
        if f.fitted:
            lines.append(f"{'':<16} fitted  {_parameters(f.fitted)}")
            weights = ", ".join(f"{kind} {weight:.2f}" for kind, weight in f.fitted["kind_weights"].items())
            lines.append(f"{'':<16} kinds   {weights or '-'}; {len(f.fitted['base_rates'])} base rates")
    return lines
