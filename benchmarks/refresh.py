"""Benchmark: belief refresh at scale (run on demand, not in the test suite).

Generates N chat-like events for M users straight into a fresh warehouse (ingest has its own
benchmark), then measures and prints:
  1. extraction: events -> observations (Python extractors), events/s;
  2. the fold of a full refresh (observations -> beliefs, history, run record) beside a bare DuckDB
     GROUP BY computing the same decayed sums into a table, and their ratio (goal <= 2x);
  3. an incremental refresh after 1 % new events, as a fraction of the full refresh (goal <= 5 %);
  4. peak RSS of the whole process tree (this process and its extraction workers), sampled from /proc
     every 50 ms, per step and split into this process vs the workers, beside DuckDB's own accounting
     (duckdb_memory(): its buffer pool, by tag) at that step's peak (goal <= 2 GB under
     `--memory-limit 1GB` at 10 M events).

    python benchmarks/refresh.py --events 5000000 --users 1000000 --workdir /tmp/refresh-bench
    python benchmarks/refresh.py --events 10000000 --users 2000000 --memory-limit 1GB --workdir /work/tmp/rb
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from selfmodel.beliefs import parameters  # noqa: E402
from selfmodel.beliefs.refresh import refresh_beliefs  # noqa: E402
from selfmodel.clock import FixedClock  # noqa: E402
from selfmodel.settings import load_settings  # noqa: E402
from warehouse.db import connect  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
DAYS = 180

# Deterministic chat-like messages: a role, a fact, a topic, sometimes code or a long answer.
GENERATE_EVENTS = """
insert into events
select
    'b' || $batch || '-' || i as event_id,
    'u' || (hash(i * 7919 + $batch) % $users) as user_id,
    $start::timestamptz + to_seconds((hash(i + 17 * $batch) % ($days * 86400))::bigint) as occurred_at,
    'message' as kind,
    -- Varied text (numbers, names, lengths) so no two messages are alike, as in real logs.
    case hash(i) % 6
        when 0 then 'I am a ' || (['nurse', 'teacher', 'software engineer', 'student', 'lawyer'])[(1 + hash(i * 3) % 5)::bigint]
                    || ' and I love ' || (['jazz music', 'hiking', 'my dog', 'cooking pasta', 'chess'])[(1 + hash(i * 5) % 5)::bigint]
                    || ', especially on day ' || (i % 97) || ' of the month'
        when 1 then 'How do I fix this? `x = foo(' || (i % 1000) || ')` keeps failing with error ' || (hash(i) % 9973)
                    || ' in my code, I tried restarting twice'
        when 2 then 'my favorite band is ' || (['queen', 'abba', 'radiohead'])[(1 + hash(i * 11) % 3)::bigint]
                    || ' and I saw them ' || (i % 13) || ' times'
        when 3 then (['ok thanks', 'thank you!', 'great, that works', 'no', 'hmm'])[(1 + hash(i * 7) % 5)::bigint]
        when 4 then 'I am new to quantum computing, what is a qubit and why does superposition matter for the '
                    || (i % 50) || ' qubit case?'
        else 'Could you explain that again in more detail please, I did not understand part ' || (i % 7)
             || ' of your answer about ' || (['taxes', 'the weather', 'python', 'football', 'bread'])[(1 + hash(i * 13) % 5)::bigint]
    end as text,
    null as session_id, null as reply_to, null as rating,
    case when hash(i) % 4 = 0 then ['qubit', 'entanglement'] else []::varchar[] end as tags,
    'bench' as source, 'batch-' || $batch as batch_id, '{}'::json as attributes,
    md5(i::varchar) as content_hash, false as is_late, now() as ingested_at
from range($count) as t(i)
"""

REGISTER_BATCH = """
insert into ingest_batches (batch_id, source, format, status, started_at, ended_at, rows_read, loaded, duplicates,
                            quarantined, late_events, labels_loaded, files, watermark_before, error, code_version,
                            events_loaded)
values ('batch-' || $batch, 'bench', 'jsonl', 'committed', now(), now(), $count, $count, 0, 0, 0, 0, '[]', null, null,
        'bench', $count)
"""

BARE_GROUP_BY = """
create or replace table bare_decayed_sums as
select o.user_id, o.key, o.value,
       sum(o.weight * pow(2.0, -((epoch_us($as_of) - epoch_us(o.observed_at)) / 86400e6) / p.half_life_days)) as s,
       count(*) as n, min(o.observed_at) as first_seen, max(o.observed_at) as last_seen
from observations as o
join key_policies as p on p.family = split_part(o.key, '@', 1)
where o.observed_at <= $as_of
group by o.user_id, o.key, o.value
"""


FOLD_GOAL = 2.0
RSS_GOAL_MB = 2048


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # the process has just ended
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
    except OSError:
        pass
    return found + [grandchild for child in found for grandchild in _children(child)]


class TreeRss:
    """Peak RSS of this process and its descendants (the extraction workers), sampled from /proc, per step.

    At each new peak of the tree it also reads DuckDB's own accounting (duckdb_memory(), through a cursor of
    its own: the database instance's buffer pool, whatever connection uses it), so a peak says how much of it
    DuckDB's buffer manager knew about.
    """

    def __init__(self, con, interval: float = 0.05) -> None:
        self.cursor = con.cursor()
        self.interval = interval
        self.step = "start"
        self.peaks: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "TreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def during(self, step: str):
        self.step = step
        try:
            yield
        finally:
            self.step = "between steps"

    def _duckdb_mb(self) -> dict[str, float]:
        try:
            rows = self.cursor.execute("select tag, memory_usage_bytes, temporary_storage_bytes from duckdb_memory()"
                                       ).fetchall()
        except Exception:  # the connection is busy in a way that refuses even this: leave it out
            return {}
        return {"buffer pool": sum(r[1] for r in rows) / 2**20, "spilled": sum(r[2] for r in rows) / 2**20,
                **{f"  {tag.lower()}": used / 2**20 for tag, used, _ in rows if used > 32 * 2**20}}

    def _sample(self) -> None:
        me = os.getpid()
        while not self._stop.wait(self.interval):
            main = _rss_mb(me)
            workers = sum(_rss_mb(child) for child in _children(me))
            peak = self.peaks.setdefault(self.step, {"tree": 0.0})
            if main + workers > peak["tree"]:
                peak.update(tree=main + workers, main=main, workers=workers, duckdb=self._duckdb_mb())

    def overall(self) -> float:
        return max((peak["tree"] for peak in self.peaks.values()), default=0.0)


def generate(con, batch: int, count: int, users: int) -> None:
    con.execute(GENERATE_EVENTS, {"batch": batch, "users": users, "count": count, "start": START, "days": DAYS}).fetchall()
    con.execute(REGISTER_BATCH, {"batch": batch, "count": count}).fetchall()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/selfmodel-refresh-bench"))
    parser.add_argument("--memory-limit", help="warehouse.memory_limit, e.g. 1GB (default: DuckDB's, 80 %% of RAM)")
    parser.add_argument("--workers", type=int, help="beliefs.extract_workers (default: the config's)")
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    warehouse = "{path: wh.duckdb" + (f", memory_limit: {args.memory_limit}" if args.memory_limit else "") + "}"
    beliefs = "{as_of: now" + (f", extract_workers: {args.workers}" if args.workers else "") + "}"
    (args.workdir / "selfmodel.yaml").write_text(f"warehouse: {warehouse}\nsources: []\nbeliefs: {beliefs}\n")
    settings = load_settings(args.workdir / "selfmodel.yaml", environ={})
    as_of = START + timedelta(days=DAYS)
    con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
    print(f"duckdb settings: " + ", ".join(f"{name} = {value}" for name, value in con.execute(
        "select name, value from duckdb_settings() where name in ('memory_limit', 'threads', 'temp_directory', "
        "'preserve_insertion_order', 'max_temp_directory_size') order by name").fetchall()))
    rss = TreeRss(con).__enter__()

    started = time.perf_counter()
    with rss.during("generate events"):
        generate(con, 1, args.events, args.users)
    print(f"generated {args.events:,} events for up to {args.users:,} users in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    with rss.during("full refresh (extract + fold)"):
        full = refresh_beliefs(con, settings, as_of=as_of, full=True, clock=FixedClock(as_of))
    full_seconds = time.perf_counter() - started
    # Time the two halves of a full refresh apart: extraction (Python) and the fold (SQL).
    started = time.perf_counter()
    refold = refresh_beliefs(con, settings, as_of=as_of, full=False, clock=FixedClock(as_of))
    noop_seconds = time.perf_counter() - started
    con.execute("delete from belief_history").fetchall()
    con.execute("delete from refresh_runs").fetchall()
    started = time.perf_counter()
    with rss.during("fold only (refresh, nothing to extract)"):
        fold_only = refresh_beliefs(con, settings, as_of=as_of, full=False, clock=FixedClock(as_of))
    fold_seconds = time.perf_counter() - started

    with parameters.registered(con, parameters.configured(settings)), rss.during("bare GROUP BY"):
        started = time.perf_counter()
        con.execute(BARE_GROUP_BY, {"as_of": as_of}).fetchall()
        bare_seconds = time.perf_counter() - started
    [(bare_rows,)] = con.execute("select count(*) from bare_decayed_sums").fetchall()

    new_events = max(1, args.events // 100)
    generate(con, 2, new_events, args.users)
    started = time.perf_counter()
    with rss.during("incremental refresh"):
        incremental = refresh_beliefs(con, settings, as_of=as_of, clock=FixedClock(as_of))
    incremental_seconds = time.perf_counter() - started
    rss.__exit__()
    con.close()

    extraction_seconds = full_seconds - fold_seconds
    print()
    print(f"{'step':<44} {'seconds':>9}  detail")
    print(f"{'full refresh (extract + fold)':<44} {full_seconds:>9.2f}  {full.events_extracted:,} events -> "
          f"{full.observations_extracted:,} observations -> {full.beliefs_total:,} beliefs")
    print(f"{'  of which extraction (Python)':<44} {extraction_seconds:>9.2f}  "
          f"{full.events_extracted / max(extraction_seconds, 1e-9):,.0f} events/s")
    print(f"{'  of which fold (SQL, all observations)':<44} {fold_seconds:>9.2f}  {fold_only.observations_folded:,} "
          f"observations into {fold_only.groups_touched:,} groups")
    print(f"{'bare DuckDB GROUP BY, same decayed sums':<44} {bare_seconds:>9.2f}  {bare_rows:,} rows")
    print(f"{'refresh with nothing new':<44} {noop_seconds:>9.2f}  folded {refold.observations_folded}")
    print(f"{'incremental refresh after 1 % new events':<44} {incremental_seconds:>9.2f}  {incremental.events_extracted:,} "
          f"events, {incremental.groups_touched:,} groups touched")
    print()
    print(f"{'step':<44} {'peak RSS of the process tree (MB)':>34}  DuckDB's accounting at that peak (MB)")
    for step, peak in rss.peaks.items():
        if step == "between steps":
            continue
        duckdb_mb = ", ".join(f"{name.strip()} {mb:,.0f}" for name, mb in peak.get("duckdb", {}).items()
                              if mb >= 1 or name == "buffer pool")
        print(f"{step:<44} {peak['tree']:>9,.0f} = {peak['main']:,.0f} main + {peak['workers']:,.0f} workers  "
              f"{duckdb_mb}")
    print()
    ratio = fold_seconds / bare_seconds
    print(f"fold / bare GROUP BY:                 {ratio:.2f}x  (goal <= {FOLD_GOAL:g}x: "
          f"{'met' if ratio <= FOLD_GOAL else 'missed'})")
    print(f"incremental / full refresh:           {incremental_seconds / full_seconds:.1%}  (goal <= 5 %)")
    print(f"incremental / full fold:              {incremental_seconds / fold_seconds:.1%}")
    peak = rss.overall()
    at_goal_scale = args.events >= 10_000_000 and args.memory_limit is not None
    verdict = ("met" if peak <= RSS_GOAL_MB else "missed") if at_goal_scale else "not at the goal's scale"
    print(f"peak RSS, process tree:               {peak:,.0f} MB  (goal <= {RSS_GOAL_MB:,} MB at 10 M events under "
          f"--memory-limit 1GB: {verdict}; memory_limit {args.memory_limit or 'default'})")


if __name__ == "__main__":
    main()
