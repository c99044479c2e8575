"""Backfill beliefs over a range of nights: the belief history nightly refreshes would have written.

A backfill refreshes beliefs as of each night from `start` to `end`, one `every` apart. The first night
rewinds: what the warehouse believed from `start` on is dropped and every stored observation up to
`start` is folded from scratch (equal to the incremental state there, to 1e-9). Each later night is an
ordinary incremental refresh. So a backfill over nights the warehouse never refreshed fills them in, one
over nights already refreshed replaces them with the same numbers (re-running it is idempotent), and
both give the history nightly runs would have written had every event arrived on time. The one
difference is by design: an event that arrived late counts from when it happened, not from the night
it was ingested.

Refreshes after `end` are replaced too (they were folded from the old state): when beliefs were
already as of a later time, a last incremental refresh brings them back to it (`caught_up_to`), so a
backfill never leaves current beliefs in the past. Snapshots are not published for past nights: the
online service keeps serving the current one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import duckdb

from selfmodel.beliefs.refresh import (
    RefreshError, RefreshReport, latest_allowed_as_of, refresh_beliefs, refuse_future_as_of,
)
from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import Settings
from warehouse.db import run

log = logging.getLogger("selfmodel.beliefs")

MAX_NIGHTS = 10_000  # a typo in --every (minutes for days) should fail, not run for a week


class BackfillError(ValueError):
    """A backfill range that cannot be run (the message says why)."""


@dataclass
class BackfillReport:
    start: datetime
    end: datetime
    every: timedelta
    nights: list[RefreshReport] = field(default_factory=list)
    caught_up_to: datetime | None = None

    def to_json(self) -> dict:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "every_seconds": self.every.total_seconds(),
            "nights": [night.to_json() for night in self.nights],
            "caught_up_to": self.caught_up_to.isoformat() if self.caught_up_to else None,
        }


def backfill_nights(start: datetime, end: datetime, every: timedelta) -> list[datetime]:
    """start, start + every, ... up to and including end."""
    if start.tzinfo is None or end.tzinfo is None:
        raise BackfillError("backfill times need a time zone (e.g. 2018-08-01T02:00:00Z)")
    if every <= timedelta(0):
        raise BackfillError(f"--every must be positive (got {every})")
    if end < start:
        raise BackfillError(f"the range ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    count = int((end - start) / every) + 1
    if count > MAX_NIGHTS:
        raise BackfillError(f"{count:,} nights from {start.isoformat()} to {end.isoformat()} every {every}: "
                            f"more than {MAX_NIGHTS:,}; use a larger --every or a shorter range")
    return [start + every * number for number in range(count)]


def backfill_beliefs(con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
                     every: timedelta = timedelta(days=1), clock: Clock | None = None,
                     on_night: Callable[[RefreshReport], None] | None = None) -> BackfillReport:
    """Refresh beliefs as of every night in [start, end]; the first night rewinds (see the module doc).

    Each night is its own transaction: interrupted, the history holds whole nights up to the last one
    done, and running the same backfill again redoes it from `start`.
    """
    nights = backfill_nights(start, end, every)
    clock = clock or SystemClock()
    try:  # before the first night rewinds anything
        refuse_future_as_of(end, settings, clock, what="the range's end")
    except RefreshError as exc:
        raise BackfillError(str(exc)) from None
    previous = run(con, "last_refresh")
    latest_before = previous[0][0] if previous else None
    if latest_before is not None and latest_before > latest_allowed_as_of(settings, clock):
        # Left by a refresh given an as-of past now (before refreshes refused one): nothing to come back to.
        log.warning("beliefs were as of %s, in the future; the backfill leaves them as of %s",
                    latest_before.isoformat(), nights[-1].isoformat())
        latest_before = None
    report = BackfillReport(start, end, every)
    for number, night in enumerate(nights):
        # The LLM extractor asks once, before the first night (one budget); later nights use its cache.
        night_report = refresh_beliefs(con, settings, as_of=night, clock=clock, rewind=number == 0,
                                       ask_llm=number == 0)
        report.nights.append(night_report)
        if on_night is not None:
            on_night(night_report)
    if latest_before is not None and latest_before > nights[-1]:
        refresh_beliefs(con, settings, as_of=latest_before, clock=clock, ask_llm=False)
        report.caught_up_to = latest_before
    log.info("backfill %s .. %s: %d nights", start.isoformat(), end.isoformat(), len(nights))
    return report
