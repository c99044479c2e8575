"""The one retry condition of our tasks: retry what may pass on its own, never a busy warehouse."""

from __future__ import annotations

import duckdb

from warehouse.db import WarehouseBusyError


def transient_failure(task, task_run, state) -> bool:
    """A Prefect retry condition, decided by the exception's type alone:
    - a busy warehouse (WarehouseBusyError, the writer lock's WriterLockBusy included) is never retried: the
      task's connection waited for it already (`nightly.lock_wait_seconds`), and the run ends as busy
      instead of retrying for minutes;
    - an exception that says whether it is `retryable` (a source's failed batch: its I/O, not its data) is
      taken at its word;
    - an I/O error of the file system or of DuckDB's storage (a network mount's hiccup) is retried;
    - anything else, a bug or bad data, would fail the same way again."""
    try:
        state.result()
    except WarehouseBusyError:
        return False
    except Exception as exc:
        retryable = getattr(exc, "retryable", None)
        if retryable is not None:
            return bool(retryable)
        return isinstance(exc, (OSError, duckdb.IOException))
    return False
