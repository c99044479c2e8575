"""Hold the warehouse's writer lock from another process, as a nightly run elsewhere would.

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
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(warehouse), what], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(10)
