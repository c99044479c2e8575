"""One retry condition for every task, decided by the exception's type: never a busy warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from selfmodel.lock import WriterLockBusy
from tasks.ingest import BatchFailed
from tasks.retry import transient_failure
from warehouse.db import WarehouseBusyError, WarehouseError


class FinalState:
    """What Prefect hands a retry condition: a state whose result() raises the task's exception."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error

    def result(self):
        if self.error is not None:
            raise self.error
        return "done"


def batch_failed(retryable: bool) -> BatchFailed:
    class Report:
        batch_id, source, error = "b1", "app", "the bucket timed out"

    Report.retryable = retryable
    return BatchFailed(Report())


@pytest.mark.parametrize("error, retried", [
    (WarehouseBusyError("warehouse w.duckdb is busy", {}), False),
    (WriterLockBusy(Path("w.duckdb.lock"), {"pid": 42}, 3.0), False),
    (batch_failed(retryable=True), True),
    (batch_failed(retryable=False), False),
    (OSError(5, "Input/output error"), True),
    (duckdb.IOException("could not read block"), True),
    (WarehouseError("cannot open warehouse: not a database"), False),
    (ValueError("a bug"), False),
    (None, False),
], ids=["busy", "writer-lock-busy", "retryable-batch", "data-batch", "os-error", "duckdb-io", "warehouse-error",
        "bug", "completed"])
def test_the_retry_condition(error, retried) -> None:
    assert transient_failure(None, None, FinalState(error)) is retried


def test_no_task_keeps_a_retry_condition_of_its_own() -> None:
    from tests.conftest import REPO_ROOT

    for path in (REPO_ROOT / "tasks").glob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if "retry_condition_fn=" in line:
                assert "retry_condition_fn=transient_failure" in line, (path.name, line)
