"""Hold the warehouse's writer lock from another process, as a nightly run elsewhere would, or the
warehouse file itself, as a DuckDB shell or a notebook on the live file would.

Inside one process the lock is re-entrant (a step flow runs inside the nightly run that holds it), so a
test of "another writer is refused" needs a real second process.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

HOLDER = """
import sys
from selfmodel.lock import writer_lock
with writer_lock(sys.argv[1], what=sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.read()  # hold until the test closes our stdin
"""


@contextmanager
def lock_held_elsewhere(warehouse: Path, what: str) -> Iterator[subprocess.Popen]:
    """The writer lock of `warehouse` held by a child process for the block; yields the child."""
    with _held_by_child(HOLDER, [str(warehouse), what], ready="locked") as holder:
        yield holder


DUCKDB_HOLDER = """
import sys
import duckdb
con = duckdb.connect(sys.argv[1])  # read-write, as a DuckDB shell or a notebook on the live file
print("open", flush=True)
sys.stdin.read()  # hold until the test closes our stdin
"""


@contextmanager
def warehouse_open_elsewhere(warehouse: Path) -> Iterator[subprocess.Popen]:
    """The warehouse file held open by a child process's DuckDB connection for the block (it creates the
    file if needed); yields the child. Close its stdin to make it let go earlier."""
    Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    with _held_by_child(DUCKDB_HOLDER, [str(warehouse)], ready="open") as holder:
        yield holder


@contextmanager
def _held_by_child(script: str, args: list[str], ready: str) -> Iterator[subprocess.Popen]:
    """A child running `script` until its stdin closes; the block starts once it printed `ready`."""
    holder = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == ready
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(10)
