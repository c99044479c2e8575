"""Refresh beliefs: extract observations from new events, then fold them into the belief state.

Incremental by default: only (user, key) groups with new observations are touched, their stored
evidence moved to the new as-of by the decay factor (exact, see selfmodel.beliefs.model). `full`
re-extracts every event and recomputes every belief from scratch; both give the same numbers.
`rewind` (the first night of a backfill, selfmodel.beliefs.backfill) drops what was believed from its
as-of on and folds every stored observation up to then from scratch, without re-extracting.
Everything happens in one transaction: a refresh lands whole or not at all.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Callable

import duckdb

from selfmodel.beliefs import parameters as beliefs_parameters
from selfmodel.beliefs.observe import ExtractionReport, extract_pending
from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import LLM_EXTRACTOR, Settings
from selfmodel.version import code_version
from warehouse.db import execute, joins_as_written, load_sql, run, run_script

log = logging.getLogger("selfmodel.beliefs")


class RefreshError(ValueError):
    """A refresh that cannot be done as asked (the message says what to do instead)."""


@dataclass
class RefreshReport:
    refresh_id: str
    as_of: datetime | None
    mode: str
    parameter_set: str | None = None
    calibration_id: str | None = None
    refolded: bool = False  # every group recomputed because the parameters changed
    events_extracted: int = 0
    observations_extracted: int = 0
    observations_folded: int = 0
    groups_touched: int = 0
    beliefs_total: int = 0
    llm: dict | None = None  # the LLM extractor's run, when it is on (selfmodel.llm.extraction.AskReport)

    def to_json(self) -> dict:
        return {**asdict(self), "as_of": self.as_of.isoformat() if self.as_of else None}


def latest_allowed_as_of(settings: Settings, clock: Clock) -> datetime:
    """Now plus the clock-skew tolerance ingest allows an event (ingest.max_clock_skew_seconds)."""
    return clock.now() + timedelta(seconds=settings.ingest.max_clock_skew_seconds)


def refuse_future_as_of(as_of: datetime | None, settings: Settings, clock: Clock | None = None,
                        what: str = "as-of") -> None:
    """An as-of later than now (plus the skew tolerance) is a typo, not a night: refuse it before anything is
    written. Beliefs as of the far future would decay every confidence to 0, and every later refresh
    would be "going back"."""
    if as_of is None:
        return
    latest = latest_allowed_as_of(settings, clock or SystemClock())
    if as_of > latest:
        raise RefreshError(
            f"{what} {as_of.isoformat()} is in the future: later than now plus the clock-skew tolerance "
            f"(ingest.max_clock_skew_seconds = {settings.ingest.max_clock_skew_seconds:g}), {latest.isoformat()}"
        )


def resolve_as_of(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: datetime | None,
                  clock: Clock) -> datetime | None:
    if as_of is not None:
        return as_of
    if settings.beliefs.as_of == "now":
        return clock.now()
    [(latest,)] = run(con, "data_end", {"source": None, "as_of": None})
    return latest


Extraction = Callable[[duckdb.DuckDBPyConnection, Settings, datetime], ExtractionReport]
# progress(step, steps done, steps in all): what a refresh is doing, for a progress bar.
Progress = Callable[[str, int, int], None]
REFRESH_STEPS = ("extract observations", "fold into beliefs", "write history")


def llm_extraction_on(settings: Settings) -> bool:
    """The LLM extractor runs: an llm endpoint is configured and beliefs.extractors.llm is enabled."""
    return settings.llm is not None and settings.beliefs.extractor(LLM_EXTRACTOR).enabled


def refresh_beliefs(con: duckdb.DuckDBPyConnection, settings: Settings, as_of: datetime | None = None,
                    full: bool = False, clock: Clock | None = None,
                    extraction: Extraction = extract_pending, rewind: bool = False, chat_model=None,
                    ask_llm: bool = True, progress: Progress | None = None) -> RefreshReport:
    """Extract and fold everything new into beliefs as of `as_of` (default: beliefs.as_of).

    `extraction` stores the new observations inside the refresh's transaction: by default it runs the
    extractors here; a sharded refresh passes one that loads what its shards extracted elsewhere.
    With the LLM extractor on, pending user messages are first asked about (selfmodel.llm.extraction: each
    answer cached as it arrives, outside the transaction, so nothing paid for is lost if the refresh fails);
    `chat_model` replaces the configured endpoint. `ask_llm` False only observes what is cached: a refresh that
    follows another in the same run (a calibration's re-fold, a backfill's later nights) asks nothing more, so
    one run spends at most one budget. `progress(step, steps done, steps)` hears of each step as it starts
    and once more when all are done (the CLI's progress bar, a Prefect progress artifact).
    """
    progress = progress or (lambda step, done, total: None)
    clock = clock or SystemClock()
    started = clock.now()
    refresh_id = f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    asked = None
    if ask_llm and llm_extraction_on(settings):
        from selfmodel.llm.extraction import ask_pending  # not imported on the default, offline path

        refuse_future_as_of(as_of, settings, clock)  # before paying for anything
        progress("ask the LLM", 0, len(REFRESH_STEPS))
        asked = ask_pending(con, settings, clock, chat_model, everything=full)
    execute(con, "begin transaction")
    try:
        report = _refresh(con, settings, as_of, full, clock, started, refresh_id, extraction, rewind, progress)
        execute(con, "commit")
    except Exception:
        execute(con, "rollback")
        raise
    progress("done", len(REFRESH_STEPS), len(REFRESH_STEPS))
    if asked is not None:
        report.llm = {**asked.to_json(), **(report.llm or {})}
    log.info("refresh %s (%s) as of %s: %d observations folded into %d groups; %d beliefs",
             refresh_id, report.mode, report.as_of, report.observations_folded, report.groups_touched,
             report.beliefs_total)
    return report


def _refresh(con, settings: Settings, as_of: datetime | None, full: bool, clock: Clock, started: datetime,
             refresh_id: str, extraction: Extraction, rewind: bool = False,
             progress: Progress = lambda step, done, total: None) -> RefreshReport:
    mode = "full" if full else "rewind" if rewind else "incremental"
    previous = run(con, "last_refresh")
    prev_as_of, prev_watermark = previous[0] if previous and mode == "incremental" else (None, None)
    as_of = resolve_as_of(con, settings, as_of, clock)
    if as_of is None:
        return RefreshReport(refresh_id, None, mode)  # an empty warehouse: nothing to believe yet
    refuse_future_as_of(as_of, settings, clock)
    if prev_as_of is not None and as_of < prev_as_of:
        if prev_as_of > latest_allowed_as_of(settings, clock):  # left by a refresh before the check above
            raise RefreshError(
                f"beliefs are as of {prev_as_of.isoformat()}, in the future: a refresh was given an as-of past now, "
                f"so no incremental refresh can go on from them. Rebuild them with `selfmodel refresh --full` "
                f"(at the usual as-of, beliefs.as_of; --as-of to choose), or `selfmodel backfill --from T --to T` to "
                f"rebuild the history night by night; later refreshes and nightly runs go on from there."
            )
        raise RefreshError(
            f"beliefs are already as of {prev_as_of.isoformat()}; an incremental refresh cannot go back to "
            f"{as_of.isoformat()}. Use `selfmodel refresh --full --as-of {as_of.isoformat()}` to rebuild at that "
            f"time, or `selfmodel beliefs USER --as-of` to look back."
        )
    report = RefreshReport(refresh_id, as_of, mode)
    if full:
        # From scratch: evidence is drawn again from every event. What we believed before as_of stays in
        # history; a full refresh back in time also drops what later refreshes believed from as_of on
        # (as a rewind does), so history never holds two states in force at one moment.
        run_script(con, "reset_observations")
        run_script(con, "rewind_history", {"as_of": as_of})
        run(con, "supersede_refreshes", {"as_of": None, "superseded_at": started})
    elif rewind:
        # From what every observation says up to as_of: what was believed from as_of on goes, what
        # was in force then ends there; observations are kept (the same extractors made them).
        run_script(con, "rewind_history", {"as_of": as_of})
        run(con, "supersede_refreshes", {"as_of": as_of, "superseded_at": started})
    progress(REFRESH_STEPS[0], 0, len(REFRESH_STEPS))
    extracted = extraction(con, settings, started)
    report.events_extracted, report.observations_extracted = extracted.events, extracted.observations
    if llm_extraction_on(settings):
        from selfmodel.llm.extraction import observe_cached

        observed = observe_cached(con, settings)
        report.observations_extracted += observed.observations
        report.llm = {"observations": observed.observations, "events_observed": observed.events}
    [(watermark,)] = run(con, "max_extract_run")
    parameters = beliefs_parameters.in_force(con, settings)
    report.parameter_set = beliefs_parameters.store(con, parameters)
    report.calibration_id = parameters.calibration_id
    # Beliefs folded with other parameters (a calibration adopted or rolled back, a config edit) are not
    # comparable with new ones: every group is recomputed from its observations.
    previous_set = run(con, "last_refresh_parameter_set") if mode == "incremental" else []
    report.refolded = mode == "incremental" and (not previous_set or previous_set[0][0] != report.parameter_set)
    progress(REFRESH_STEPS[1], 1, len(REFRESH_STEPS))
    # Every group when there is no previous state or the parameters changed; else the groups with new observations.
    fold = "fold_all_observations" if report.refolded or prev_as_of is None else "fold_observations"
    with beliefs_parameters.registered(con, parameters), joins_as_written(con):
        execute(con, "create or replace temp table folded as " + load_sql(fold),
                {"as_of": as_of, "watermark": watermark, "prev_as_of": prev_as_of, "prev_watermark": prev_watermark})
    [(report.groups_touched, report.observations_folded)] = run(con, "folded_summary")
    progress(REFRESH_STEPS[2], 2, len(REFRESH_STEPS))
    # Full and rewind closed every row in force before extracting; a first refresh has none to close.
    if mode == "incremental" and run(con, "history_in_force")[0][0]:
        run(con, "close_history", {"as_of": as_of})
    run(con, "open_history", {"as_of": as_of})
    [(report.beliefs_total,)] = run(con, "count_beliefs")
    run(con, "insert_refresh_run", {
        "refresh_id": refresh_id, "as_of": as_of, "mode": mode, "extract_run_watermark": watermark,
        "started_at": started, "ended_at": clock.now(), "observations_folded": report.observations_folded,
        "groups_touched": report.groups_touched, "beliefs_total": report.beliefs_total,
        "config_hash": settings.config_hash(), "code_version": code_version(),
        "parameter_set": report.parameter_set, "calibration_id": report.calibration_id,
    })
    execute(con, "drop table folded")
    return report
