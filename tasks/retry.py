"""Which task failures are worth a retry: I/O that may pass on its own, never a busy warehouse."""

from __future__ import annotations

import duckdb

from warehouse.db import WarehouseBusyError


def io_error_may_pass(task, task_run, state) -> bool:
    """A Prefect retry condition: retry an I/O error of the file system or of DuckDB's storage (a network
    mount's hiccup), nothing else. A busy warehouse is never retried: the task's connection waited for
    it already (`nightly.lock_wait_seconds`), and the run ends as busy instead of retrying for minutes.
    A bug or bad data fails the same way again."""
    try:
        state.result()
    except WarehouseBusyError:
        return False
    except (OSError, duckdb.IOException):
        return True
    except Exception:
        return False
    return False
