"""The warehouse's single-writer lock: one nightly run (or other long writer) at a time.

DuckDB already refuses a second read-write connection, but a nightly run opens and closes the warehouse
once per step, so two runs could interleave their steps (one's ingest between the other's refresh and
publish). This lock is held for a whole run instead: an exclusive `flock` on a file beside the warehouse
(`<warehouse>.lock`). The kernel releases it when the holder exits, however it exits (`kill -9` too), so a
crashed run never leaves a stale lock behind. The holder writes who it is into the file (pid, host, what,
since when) so a second run can say whom it waited for.

A lock on a network file system is only as good as that file system's `flock`; keep the warehouse on a
local disk (README "Running it in production").
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

from warehouse.db import WarehouseBusyError, WarehouseError

if TYPE_CHECKING:
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
        self.holder = holder
        self.waited = waited
        who = f"process {holder['pid']}" if holder.get("pid") else "another process"
        if holder.get("host") and holder.get("host") != socket.gethostname():
            who += f" on {holder['host']}"
        what = f" ({holder['what']}, since {holder['since']})" if holder.get("what") else ""
        waited_text = f" after waiting {waited:.0f} s" if waited >= 1 else ""
        super().__init__(
            f"the warehouse is being written by {who}{what}{waited_text}; only one writer may run at a time. "
            f"This run exits without writing. Lock file: {lock_path}"
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


def run_writer_lock(settings: "Settings", what: str):
    """The writer lock for a whole run (a flow, the nightly run), waiting up to `nightly.lock_wait_seconds`."""
    return writer_lock(settings.warehouse_path, what=what, wait_seconds=settings.nightly.lock_wait_seconds)
