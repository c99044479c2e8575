"""The warehouse's single-writer lock: one nightly run (or other long writer) at a time.

DuckDB already refuses a second read-write connection, but a nightly run opens and closes the warehouse
once per step, so two runs could interleave their steps (one's ingest between the other's refresh and
publish). This lock is held for a whole run instead: an exclusive `flock` on a file beside the warehouse
(`<warehouse>.lock`). The kernel releases it when the holder exits, however it exits (`kill -9` too), so a
crashed run never leaves a stale lock behind. The holder writes who it is into the file (pid, host, what,
since when) so a second run can say whom it waited for.

A lock on a network file system is only as good as that file system's `flock`; keep the warehouse on a
local disk (docs/reference.md "Running it in production").

Processes that are not ours ignore this lock: a DuckDB shell or a notebook with the live file open locks
every writer out through DuckDB's own file lock. A run waits for that the same way, for the same time
(`nightly.lock_wait_seconds`): at its start (`run_writer_lock`) and at every connection its tasks open
(`run_connection`), so a run meeting either lock ends the same way, as busy.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from warehouse.db import WarehouseBusyError, WarehouseError, connect, wait_until_free

if TYPE_CHECKING:
    import duckdb

    from selfmodel.settings import Settings

LOCK_SUFFIX = ".lock"
POLL_SECONDS = 0.25

# Locks this process holds, by lock file: a flow that takes the lock may run inside another that holds
# it already (a step of the nightly run, `selfmodel ingest --prefect`). A second flock on a new
# descriptor would wait for ourselves, so inside the process the lock is re-entrant.
_held: dict[Path, dict] = {}  # lock file -> its holder record, while this process holds it
_held_guard = threading.Lock()


class WriterLockBusy(WarehouseBusyError):
    """Another process holds the warehouse's writer lock (and kept it for as long as we were willing to wait)."""

    def __init__(self, lock_path: Path, holder: dict, waited: float) -> None:
        self.lock_path = lock_path
        self.waited = waited
        who = f"process {holder['pid']}" if holder.get("pid") else "another process"
        if holder.get("host") and holder.get("host") != socket.gethostname():
            who += f" on {holder['host']}"
        what = f" ({holder['what']}, since {holder['since']})" if holder.get("what") else ""
        waited_text = f" after waiting {waited:.0f} s" if waited >= 1 else ""
        super().__init__(
            f"the warehouse is being written by {who}{what}{waited_text}; only one writer may run at a time. "
            f"This run exits without writing. Lock file: {lock_path}", holder
        )


def lock_path_for(warehouse_path: Path) -> Path:
    """The lock file beside the warehouse: `warehouse.duckdb` -> `warehouse.duckdb.lock`."""
    warehouse_path = Path(warehouse_path)
    return warehouse_path.with_name(warehouse_path.name + LOCK_SUFFIX)


def read_holder(lock_path: Path) -> dict:
    """Who wrote the lock file last (the holder, while the file is locked); {} if unknown."""
    try:
        return json.loads(Path(lock_path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def writer_lock(warehouse_path: Path, what: str, wait_seconds: float = 0.0) -> Iterator[dict]:
    """Hold the warehouse's writer lock for the block; yield the holder record written into the lock file.

    Waits up to `wait_seconds` for a current holder to finish, then raises WriterLockBusy naming it.
    """
    path = lock_path_for(warehouse_path).resolve()
    with _held_guard:
        held = _held.get(path)
    if held is not None:  # taken further up in this process, which also releases it
        yield held
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Opened without truncating: the current holder's record stays readable until we hold the lock.
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WarehouseError(f"cannot create the writer lock file {path}: {exc.strerror or exc}") from None
    try:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= wait_seconds:
                    raise WriterLockBusy(path, read_holder(path), waited) from None
                time.sleep(min(POLL_SECONDS, max(wait_seconds - waited, 0.01)))
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(holder).encode(), 0)
        with _held_guard:
            _held[path] = holder
        try:
            yield holder
        finally:
            with _held_guard:
                del _held[path]
            # The record stays (it names the last holder); the kernel drops the lock on close or exit.
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


@contextmanager
def run_writer_lock(settings: "Settings", what: str) -> Iterator[dict]:
    """The writer lock for a whole run (a flow, the nightly run), with the warehouse file free of other
    processes: waits up to `nightly.lock_wait_seconds` in all, then raises WarehouseBusyError naming the
    holder (WriterLockBusy for the writer lock)."""
    wait_seconds = settings.nightly.lock_wait_seconds
    started = time.monotonic()
    with writer_lock(settings.warehouse_path, what=what, wait_seconds=wait_seconds) as holder:
        wait_until_free(settings.warehouse_path, max(wait_seconds - (time.monotonic() - started), 0.0))
        yield holder


def run_connection(settings: "Settings", *, read_only: bool = False) -> "duckdb.DuckDBPyConnection":
    """A warehouse connection for a run's task: while another process has the file open (between two
    tasks, a DuckDB shell took it), it waits up to `nightly.lock_wait_seconds`, as the run's start did."""
    return connect(settings.warehouse_path, read_only=read_only, memory_limit=settings.warehouse.memory_limit,
                   wait_seconds=settings.nightly.lock_wait_seconds)
