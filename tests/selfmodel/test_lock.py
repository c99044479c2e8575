"""The warehouse's writer lock between real processes: a second writer is refused (naming the first),
waits when asked to, and a killed holder leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from selfmodel.lock import WriterLockBusy, lock_path_for, read_holder, writer_lock

HOLDER = """
import sys
from selfmodel.lock import writer_lock
with writer_lock(sys.argv[1], what="test holder"):
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin
"""


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return tmp_path / "wh" / "warehouse.duckdb"


def _start_holder(warehouse: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(warehouse)], stdin=subprocess.PIPE,
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
