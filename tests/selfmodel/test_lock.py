"""The warehouse's writer lock between real processes: a second writer is refused (naming the first),
waits when asked to, and a killed holder leaves no stale lock. A run meets the warehouse file held open by
a process that ignores the lock (a DuckDB shell) the same way: it waits, then is refused naming it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from selfmodel.lock import (
    WriterLockBusy, lock_path_for, read_holder, run_connection, run_writer_lock, writer_lock,
)
from tests.lock_holder import HOLDER, warehouse_open_elsewhere
from warehouse.db import WarehouseBusyError

@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "wh" / "warehouse.duckdb"


def _start_holder(warehouse: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(warehouse), "test holder"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_at_once_naming_the_first(warehouse: Path) -> None:
    holder = _start_holder(warehouse)
    try:
        started = time.monotonic()
        with pytest.raises(WriterLockBusy) as refused:
            with writer_lock(warehouse, what="second"):
                pytest.fail("two writers held the lock")
        assert time.monotonic() - started < 1
        assert refused.value.holder["pid"] == holder.pid
        assert f"process {holder.pid}" in str(refused.value) and "test holder" in str(refused.value)
        assert str(lock_path_for(warehouse)) in str(refused.value)
    finally:
        holder.stdin.close()
        holder.wait(10)
    with writer_lock(warehouse, what="after") as record:  # released when the holder finished
        assert record["pid"] == os.getpid()
        assert read_holder(lock_path_for(warehouse))["what"] == "after"


def test_a_waiting_writer_gets_the_lock_when_the_first_finishes(warehouse: Path) -> None:
    holder = _start_holder(warehouse)
    threading.Timer(1.0, holder.stdin.close).start()
    started = time.monotonic()
    with writer_lock(warehouse, what="patient", wait_seconds=20):
        waited = time.monotonic() - started
    holder.wait(10)
    assert 0.8 < waited < 10


def test_a_waiting_writer_gives_up_after_its_wait(warehouse: Path) -> None:
    holder = _start_holder(warehouse)
    try:
        started = time.monotonic()
        with pytest.raises(WriterLockBusy, match="after waiting 1 s"):
            with writer_lock(warehouse, what="impatient", wait_seconds=1.0):
                pass
        assert 0.9 < time.monotonic() - started < 3
    finally:
        holder.stdin.close()
        holder.wait(10)


def test_a_killed_holder_leaves_no_stale_lock(warehouse: Path) -> None:
    holder = _start_holder(warehouse)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    assert read_holder(lock_path_for(warehouse))["pid"] == holder.pid  # its record is still in the file ...
    with writer_lock(warehouse, what="next"):  # ... but the kernel released its lock
        pass


def test_the_lock_file_sits_beside_the_warehouse(tmp_path: Path) -> None:
    assert lock_path_for(tmp_path / "wh.duckdb") == tmp_path / "wh.duckdb.lock"


def test_the_holder_may_take_the_lock_again_and_other_processes_stay_out(warehouse: Path) -> None:
    # A step flow takes the lock inside the nightly run, which holds it already: that must not wait for itself.
    with writer_lock(warehouse, what="nightly") as outer:
        seen_in_thread = []
        thread = threading.Thread(target=lambda: seen_in_thread.append(
            _nested_holder(warehouse)))
        thread.start()
        thread.join(10)
        with writer_lock(warehouse, what="step") as inner:
            assert inner is outer
        assert seen_in_thread == ["nightly"]
        other = subprocess.run([sys.executable, "-c", HOLDER, str(warehouse), "test holder"], input="",
                               capture_output=True, text=True, timeout=30)
        assert other.returncode != 0 and "WriterLockBusy" in other.stderr  # still ours after the nested release
    holder = _start_holder(warehouse)  # and free once the outermost holder is done
    holder.stdin.close()
    holder.wait(10)


def _nested_holder(warehouse: Path) -> str:
    with writer_lock(warehouse, what="task thread") as record:
        return record["what"]


def test_a_warehouse_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    from warehouse.db import WarehouseError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(WarehouseError, match="cannot create the writer lock file"):
        with writer_lock(blocker / "wh" / "warehouse.duckdb", what="x"):
            pass


# --- the warehouse file held open by a process that ignores the writer lock (a DuckDB shell, a notebook) ---

@pytest.fixture
def settings_waiting(make_settings):
    """Settings whose runs wait `seconds` for the warehouse: settings_waiting(seconds)."""
    return lambda seconds: make_settings([], warehouse={"path": "wh/warehouse.duckdb"},
                                         nightly={"lock_wait_seconds": seconds})


def test_a_run_refuses_a_warehouse_file_held_open_elsewhere_after_its_wait_naming_the_holder(settings_waiting) -> None:
    settings = settings_waiting(1.0)
    with warehouse_open_elsewhere(settings.warehouse_path) as holder:
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError) as refused:
            with run_writer_lock(settings, "nightly flow run"):
                pytest.fail("the run started while another process had the warehouse open")
        assert 0.9 < time.monotonic() - started < 5
    assert not isinstance(refused.value, WriterLockBusy)  # the writer lock itself was free
    assert refused.value.holder["pid"] == holder.pid
    assert f"process {holder.pid} (python" in str(refused.value) and "after waiting 1 s" in str(refused.value)
    assert "only one writer" in str(refused.value)


def test_a_run_and_its_connections_go_on_when_the_holder_closes_the_file_during_the_wait(settings_waiting) -> None:
    settings = settings_waiting(20.0)
    with warehouse_open_elsewhere(settings.warehouse_path) as holder:
        threading.Timer(1.0, holder.stdin.close).start()
        started = time.monotonic()
        with run_writer_lock(settings, "nightly flow run"):
            waited = time.monotonic() - started
    assert 0.8 < waited < 10
    # Between two tasks, a DuckDB shell takes the file: the next task's connection waits for it too.
    with warehouse_open_elsewhere(settings.warehouse_path) as holder:
        threading.Timer(1.0, holder.stdin.close).start()
        started = time.monotonic()
        con = run_connection(settings)
        waited = time.monotonic() - started
        con.close()
    assert 0.8 < waited < 10


def test_a_task_connection_gives_up_after_the_runs_wait(settings_waiting) -> None:
    settings = settings_waiting(1.0)
    with warehouse_open_elsewhere(settings.warehouse_path) as holder:
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError, match=f"process {holder.pid}"):
            run_connection(settings)
        assert 0.9 < time.monotonic() - started < 5
