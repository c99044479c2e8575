"""kill -9 during publish, at every file operation and at random moments: CURRENT always names a complete
snapshot whose checksums verify, and the next run publishes cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from selfmodel.publish import publish
from tests.belief_warehouse import belief_warehouse, belief_warehouse_template, record_quality  # noqa: F401
from tests.conftest import REPO_ROOT
from warehouse.db import connect
from warehouse.online import BeliefStore, read_current, verify_snapshot

# One process imports everything once, then forks a publisher per trial (a fresh interpreter per trial
# would spend most of the time budget importing). Trial k < KILL_POINTS dies by SIGKILL at its k-th fsync
# or rename (every step of the protocol); the others are killed by the harness at a random moment. After
# each death the harness checks the folder with hashlib only (no Arrow threads before the next fork).
HARNESS = r"""
import itertools, json, os, random, signal, sys, time
from datetime import datetime, timedelta, timezone

from selfmodel.clock import FixedClock
from selfmodel.publish import publish
from selfmodel.settings import load_settings
from warehouse.db import connect
from warehouse.online import VERSION_PATTERN, SnapshotError, read_current, verify_snapshot

settings = load_settings(sys.argv[1], environ={})
from selfmodel.beliefs.parameters import configured
from selfmodel.version import code_version
configured(settings), code_version()  # warm what every child would otherwise load again
kill_points, random_trials = int(sys.argv[2]), int(sys.argv[3])
folder = settings.snapshots_path
rng = random.Random(7)
T = datetime(2025, 1, 1, tzinfo=timezone.utc)

def publisher(trial, kill_at):
    if kill_at is not None:
        operations = itertools.count()
        def deadly(real):
            def call(*args, **kwargs):
                if next(operations) == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            return call
        for name in ("fsync", "rename", "replace"):
            setattr(os, name, deadly(getattr(os, name)))
    con = connect(settings.warehouse_path)
    for i in itertools.count():
        result = publish(settings, con=con, clock=FixedClock(T + timedelta(minutes=trial, seconds=i)))
        assert result.published, result.reason

results = []
for trial in range(kill_points + random_trials):
    kill_at = trial if trial < kill_points else None
    pid = os.fork()
    if pid == 0:
        try:
            publisher(trial, kill_at)
        finally:
            os._exit(3)  # a publish that raised: the harness reports it
    if kill_at is None:
        time.sleep(rng.uniform(0.02, 0.5))
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    died = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    problems = []
    current = read_current(folder)
    if current is None:
        problems.append("no CURRENT")
    for entry in folder.iterdir():
        if entry.is_dir() and VERSION_PATTERN.fullmatch(entry.name):
            try:
                verify_snapshot(entry)
            except SnapshotError as exc:
                problems.append(f"{entry.name}: {exc}")
    if current is not None and not (folder / current).is_dir():
        problems.append(f"CURRENT names missing {current}")
    results.append({"trial": trial, "kill_at": kill_at, "killed": died, "status": status,
                    "current": current, "problems": problems})
print(json.dumps(results))
"""

KILL_POINTS = 20  # every step of a whole publish: staging, promotion, pruning (keep: 2), analyst copy
RANDOM_TRIALS = 8


def test_kill_9_anywhere_in_publish_never_leaves_current_on_a_partial_snapshot(belief_warehouse) -> None:
    settings = belief_warehouse(snapshots={"keep": 2}, warehouse={"analyst_copy": "analyst/warehouse.duckdb"})
    con = connect(settings.warehouse_path)
    try:
        record_quality(con)
        first = publish(settings, con=con)
    finally:
        con.close()
    assert first.published

    harness = subprocess.run(
        [sys.executable, "-c", HARNESS, str(settings.base_dir / "selfmodel.yaml"), str(KILL_POINTS), str(RANDOM_TRIALS)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert harness.returncode == 0, harness.stderr[-3000:]
    trials = json.loads(harness.stdout.strip().splitlines()[-1])
    assert len(trials) == KILL_POINTS + RANDOM_TRIALS
    assert [t for t in trials if t["problems"]] == []
    assert all(t["killed"] for t in trials), [t for t in trials if not t["killed"]]  # none failed any other way
    assert len({t["current"] for t in trials}) > 5  # kills landed before and after many switches

    # The next run cleans up and publishes; the reader opens what it published.
    result = publish(settings)
    assert result.published, result.reason
    folder = settings.snapshots_path
    assert read_current(folder) == result.version
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert leftovers == []
    assert len([p for p in folder.iterdir() if p.is_dir()]) == 2  # keep: 2
    for version in (p.name for p in folder.iterdir() if p.is_dir()):
        verify_snapshot(folder / version)
    with BeliefStore.open(folder, watch=False) as store:
        assert store.version == result.version and not store.get("alice").cold_start
    analyst = settings.analyst_copy_path
    assert [p.name for p in analyst.parent.iterdir()] == [analyst.name]
    copy = duckdb.connect(str(analyst), read_only=True)
    try:
        assert copy.execute("select count(*) from snapshot_audits where published").fetchone()[0] >= 2
    finally:
        copy.close()
