"""A read-only copy of the warehouse for analysts, so queries and flows never wait for each other.

DuckDB lets one process write a file and locks every other process out, readers included. So analysts
do not open the live warehouse: after each write step a flow copies the database it holds open into a
new file (`COPY FROM DATABASE`, consistent because the writer's own connection makes it), fsyncs it and
renames it over `warehouse.analyst_copy`. A rename is atomic: an analyst opening the copy gets the old
file or the new one, a query already running keeps reading the file it opened, and the writer never
touches a file an analyst holds. Any number of analysts can open it read-only at once.

Beside the tables and the `beliefs` view, the copy has views `eval_metrics` and `quarantine_by_reason`,
the table `analyst_export` (when and from where), and the macro `beliefs_as_of(user, moment)`.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import Settings
from selfmodel.beliefs import parameters as beliefs_parameters
from warehouse.db import connect, copy_database, execute, load_sql, replace_synced, run_script

log = logging.getLogger("selfmodel.analyst")

EXPORT_ALIAS = "analyst_export"


def export_analyst_copy(con: duckdb.DuckDBPyConnection, settings: Settings, clock: Clock | None = None) -> Path | None:
    """Replace the analyst copy with the warehouse as `con` (a read-write connection) sees it now.

    Returns the copy's path, or None when `warehouse.analyst_copy` is null.
    """
    if settings.analyst_copy_path is None:
        return None
    # A symlinked copy path: replace the file it points to (replacing the link would leave that file stale).
    target = settings.analyst_copy_path.resolve()
    clock = clock or SystemClock()
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.tmp-{os.getpid()}"
    # Only the warehouse's one writer exports, so any other temporary copy was left by a killed writer.
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        leftover.unlink(missing_ok=True)

    def add_analyst_views(source: str, copy: str) -> None:
        execute(con, f"use {copy}")
        try:
            run_script(con, "analyst_views", {"exported_at": clock.now(), "source": str(settings.warehouse_path)})
            _create_beliefs_as_of(con, settings)
        finally:
            execute(con, f"use {source}")

    copy_database(con, temporary, EXPORT_ALIAS, then=add_analyst_views)
    replace_synced(temporary, target)
    log.info("analyst copy %s refreshed in %.2f s", target, time.perf_counter() - started)
    return target


def _create_beliefs_as_of(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """`beliefs_as_of(user, moment)`: what the evidence said about a user then, by the very query
    `selfmodel beliefs USER --as-of` runs (its parameters become the macro's), over a key_policies table
    holding the config's half-lives and priors."""
    tables = beliefs_parameters.arrow_tables(beliefs_parameters.in_force(con, settings))
    for name, table in tables.items():
        con.register(f"current_{name}", table)
    try:
        for name in tables:
            execute(con, f"create or replace table {name} as select * from current_{name}")
    finally:
        for name in tables:
            con.unregister(f"current_{name}")
    body = load_sql("user_beliefs_as_of").replace("$user_id", "who").replace("$at", "moment::timestamptz")
    execute(con, f"create or replace macro beliefs_as_of(who, moment) as table {body}")


@contextmanager
def open_for_writing(settings: Settings, *, wait: bool = False, clock: Clock | None = None,
                     analyst_copy: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """The one way a step writes the warehouse: a read-write connection with the configured memory limit
    (`wait`: while another process has the file open, wait up to `nightly.lock_wait_seconds` for it, as a
    run's steps do; else busy at once), and when the block completes,
    the analyst copy replaced with what it wrote, so analysts see every finished step without ever opening
    the live file. A block that raises leaves the copy as it was: the last finished step. Closed either way.

    It does not take the writer lock (selfmodel.lock): a run holds that for all its steps, a command for itself.
    `analyst_copy=False`: for a step that another writing step always follows in the same flow run, which
    copies the warehouse then; each copy is the whole warehouse, so copying after both would do it twice.
    """
    con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit,
                  wait_seconds=settings.nightly.lock_wait_seconds if wait else 0.0)
    try:
        yield con
        if analyst_copy:
            export_analyst_copy(con, settings, clock=clock)
    finally:
        con.close()


def refresh_analyst_copy(settings: Settings, clock: Clock | None = None) -> Path | None:
    """Open the warehouse for writing just long enough to export the analyst copy."""
    if settings.analyst_copy_path is None:
        return None
    with open_for_writing(settings, clock=clock):
        pass
    return settings.analyst_copy_path.resolve()
