"""Benchmark: the online reader (warehouse.online.BeliefStore) on a 1 M-user snapshot.

Generates a snapshot whose beliefs per user follow the Quantum Computing Stack Exchange sample
(log-normal, median 8, p90 40, capped at 300: heavy answerers hold hundreds of expertise@<tag> and
topic beliefs), publishes it through selfmodel.publish.publish_table (the same files, checks and CURRENT
switch as the nightly path, without the warehouse audit), then measures and prints:
  1. open: BeliefStore.open in a fresh process, as a service starts, goal <= 0.2 s: cold (every file
     hashed, as on a machine that never verified them) and warm (verified before: only mapped);
  2. memory: RSS the open store holds; then N processes (--processes, 4) serving the snapshot at once,
     each one's RSS split into shared and private (/proc/<pid>/smaps_rollup): the arrays must be shared;
  3. get(user_id) latency over random users (10 % unknown: cold start), goal p99 <= 3 us, beside the
     same snapshot decoded from Parquet as before beliefs.arrow (alternating blocks, same load); and, for
     reference, get plus reading every belief of the model (each read builds a pydantic Belief);
  4. enrich(query, user_id) latency at the serving threshold, goal p99 <= 100 us, the same way;
  5. reload: CURRENT moved to another version, then BeliefStore.refresh() loading and swapping it in
     (verified by the publisher's audit on this machine: mapped only), goal <= 0.2 s; and get latency
     while the watcher thread reloads in the background.

    python benchmarks/lookup.py --users 1000000 --workdir /tmp/lookup-bench
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402

from selfmodel.publish import publish_table  # noqa: E402
from selfmodel.publish.folder import _switch_current as switch_current  # noqa: E402
from warehouse.online import BELIEFS_SCHEMA, BeliefStore, read_current  # noqa: E402

AS_OF = datetime(2025, 6, 1, tzinfo=timezone.utc)

# Beliefs per user: exp(N(ln 8, 1.256)) -> median 8, p90 40 (the QC sample: median 8, p90 40, p99 200).
# Keys and values from the families the extractors produce; confidences fall with rank within a user.
GENERATE = """
with users as (
    select i, 'u' || lpad(i::varchar, 7, '0') as user_id,
           least(300, greatest(1, floor(exp(ln(8) + 1.256 * sqrt(-2 * ln((hash(i) % 1000000 + 1) / 1000001.0))
                                           * cos(2 * pi() * (hash(i * 31 + 7) % 1000000) / 1000000.0)))))::int as n,
           0.5 + (hash(i * 17) % 1000) / 2000.0 as top
    from range($users) as t(i)
),
rows as (
    select u.user_id, r.rank, hash(u.i * 1000 + r.rank) as h, u.top
    from users as u, unnest(range(u.n)) as r(rank)
),
final as (
    select
        user_id,
        case h % 20
            when 0 then 'language' when 1 then 'style.verbosity' when 2 then 'style.format' when 3 then 'role'
            when 4 then 'fact' when 5 then 'expertise'
            when 6 then 'topic' when 7 then 'topic' when 8 then 'topic' when 9 then 'topic' when 10 then 'topic'
            else 'expertise@tag' || (h // 20 % 150)
        end as key,
        case h % 20
            when 0 then (['en', 'de', 'fr', 'es'])[1 + (h // 20 % 4)::int]
            when 1 then (['concise', 'detailed'])[1 + (h // 20 % 2)::int]
            when 2 then (['math', 'code', 'lists'])[1 + (h // 20 % 3)::int]
            when 3 then (['software engineer', 'student', 'nurse', 'teacher', 'researcher'])[1 + (h // 20 % 5)::int]
            when 4 then 'i have ' || (h // 20 % 9) || ' dogs'
            when 6 then 'topic-' || (h // 20 % 157) when 7 then 'topic-' || (h // 20 % 157)
            when 8 then 'topic-' || (h // 20 % 157) when 9 then 'topic-' || (h // 20 % 157)
            when 10 then 'topic-' || (h // 20 % 157)
            else (['novice', 'intermediate', 'expert'])[1 + (h // 20 % 3)::int]
        end as value,
        top * pow(0.85, rank) as confidence,
        1 + (h % 50)::bigint as evidence_count,
        (1 + (h % 50)) * 0.7 as decayed_evidence,
        $as_of::timestamptz - to_days((h % 700)::int) as first_seen,
        $as_of::timestamptz - to_seconds((h % (86400 * 90))::bigint) as last_evidence_at,
        rank
    from rows
)
select user_id, key, value, confidence, evidence_count, decayed_evidence, first_seen, last_evidence_at
from final order by user_id, rank
"""


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99.9": at(0.999), "max": ordered[-1] / 1000}


def timed(call, users: list[str], clock) -> list[int]:
    """Each call's duration by `clock` (wall or this thread's CPU time; one clock per pass, so reading
    the other does not add to what is measured)."""
    samples = []
    append = samples.append
    for user in users:
        t0 = clock()
        call(user)
        append(clock() - t0)
    return samples


def show(name: str, stats: dict[str, float], goal: str = "") -> None:
    figures = "  ".join(f"{k} {v:8.2f}" for k, v in stats.items())
    print(f"  {name:<34} {figures}  us {goal}")


def measure_open(folder: Path, verify: str) -> None:
    """In a fresh process: how long BeliefStore.open takes, and the RSS the open store holds.

    Printed as JSON for the parent. RSS is measured by a second open after a first one was released,
    so what any reader pays once (thread pools, codec state) is not counted as the store's memory.
    """
    import pyarrow as pa

    started = time.perf_counter()
    store = BeliefStore.open(folder, watch=False, verify=verify)
    open_s = time.perf_counter() - started
    store.close()
    del store
    gc.collect()
    pa.default_memory_pool().release_unused()
    before, arrow_before = rss_bytes(), pa.total_allocated_bytes()
    store = BeliefStore.open(folder, watch=False)
    gc.collect()
    print(json.dumps({"open_s": open_s, "rss": rss_bytes() - before, "arrow": pa.total_allocated_bytes() - arrow_before,
                      "users": store.users, "rows": store.manifest["rows"]}))


def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """/proc/<pid>/smaps_rollup in bytes: Rss, Pss, Shared_Clean, Private_Dirty, Anonymous, ..."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        figures[name.rstrip(":")] = int(value) * 1024
    return figures


def serve(folder: Path, calls: int) -> None:
    """A serving process: open the store, answer `calls` random lookups and enrichments (so it touches the
    pages a service touches), say "ready", and stay up until stdin closes (the parent reads our smaps)."""
    started = time.perf_counter()
    store = BeliefStore.open(folder, watch=False)
    opened = time.perf_counter() - started
    rng = random.Random(os.getpid())
    for _ in range(calls):
        user = f"u{rng.randrange(store.users):07d}"
        store.get(user)
        store.enrich("How do I prepare a Bell state?", user)
    print(json.dumps({"open_s": opened}), flush=True)
    sys.stdin.read()


def measure_shared(folder: Path, processes: int, calls: int) -> list[dict]:
    """`processes` serving processes on one snapshot at once; each one's smaps_rollup while all are up."""
    children = [subprocess.Popen([sys.executable, __file__, "--serve", str(folder), str(calls)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    try:
        opened = [json.loads(child.stdout.readline()) for child in children]
        return [{**smaps_rollup(child.pid), **up} for child, up in zip(children, opened)]
    finally:
        for child in children:
            child.stdin.close()
            child.wait()


def generate_and_publish(args, folder: Path) -> str:
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)

    started = time.perf_counter()
    con = duckdb.connect()
    table = con.sql(GENERATE, params={"users": args.users, "as_of": AS_OF}).to_arrow_table().cast(BELIEFS_SCHEMA)
    con.close()
    generated = time.perf_counter() - started
    counts = table.group_by("user_id").aggregate([("key", "count")]).column("key_count").to_pylist()
    counts.sort()
    print(f"snapshot: {table.num_rows:,} beliefs of {args.users:,} users (per user: median {counts[len(counts) // 2]}, "
          f"p90 {counts[int(len(counts) * 0.9)]}, p99 {counts[int(len(counts) * 0.99)]}, max {counts[-1]}); "
          f"generated in {generated:.1f} s")
    del counts

    started = time.perf_counter()
    version = publish_table(folder, table, data_as_of=AS_OF, created=datetime.now(timezone.utc))
    published = time.perf_counter() - started
    size = sum(f.stat().st_size for f in (folder / version).iterdir())
    print(f"publish_table (write, fsync, checks incl. one full load, CURRENT switch): {published:.2f} s, "
          f"{size / 1e6:.1f} MB on disk")

    return version


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--measure-open":
        return measure_open(Path(sys.argv[2]), sys.argv[3])
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        return serve(Path(sys.argv[2]), int(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lookup-bench"))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="Measure the snapshot a previous run left in --workdir.")
    parser.add_argument("--processes", type=int, default=4, help="Serving processes sharing one snapshot.")
    parser.add_argument("--serve-calls", type=int, default=100_000, help="Lookups + enrichments per serving process.")
    args = parser.parse_args()
    folder = args.workdir / "snapshots"
    if args.reuse and read_current(folder):
        version = read_current(folder)
        print(f"reusing snapshot {version} in {folder}")
    else:
        version = generate_and_publish(args, folder)

    # Made first: its hard link changes the Parquet file's ctime, which would void the marks of opens before it.
    legacy_folder = _legacy_copy(folder, version, args.workdir / "legacy")
    files = {f.name: f.stat().st_size for f in (folder / version).iterdir()}
    print("files: " + ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in sorted(files.items())))
    # Start-up as a service does it: a fresh process opens the store (three processes, one after another).
    # Cold: every file hashed (a machine where this user never verified these files); warm: verified before.
    for verify, label in (("always", "cold (hash every file, then map)"), ("once", "warm (verified before: map)")):
        runs = [json.loads(subprocess.run([sys.executable, __file__, "--measure-open", str(folder), verify],
                                          capture_output=True, text=True, check=True).stdout) for _ in range(3)]
        opens = [run["open_s"] for run in runs]
        print(f"\nopen {label} in a fresh process, 3 runs: " + ", ".join(f"{t:.3f} s" for t in opens)
              + f"   goal <= 0.2 s: {'ok' if max(opens) <= 0.2 else 'MISSED'}")
    memory = runs[-1]
    print(f"memory (RSS the open store holds at once): {memory['rss'] / 1e6:.0f} MB for {memory['users']:,} users "
          f"(Arrow allocations {memory['arrow'] / 1e6:.0f} MB; mapped pages count once touched, shared)")

    shared = measure_shared(folder, args.processes, args.serve_calls)
    print(f"\n{args.processes} processes serving this snapshot at once, each after {args.serve_calls:,} random get + "
          f"enrich calls (/proc/<pid>/smaps_rollup, MB):")
    print(f"  {'pid':>3} {'open s':>7} {'Rss':>7} {'Pss':>7} {'shared':>7} {'private':>8} {'anon':>7}")
    for i, figures in enumerate(shared):
        private = figures["Private_Clean"] + figures["Private_Dirty"]
        print(f"  {i:>3} {figures['open_s']:7.3f} {figures['Rss'] / 1e6:7.0f} {figures['Pss'] / 1e6:7.0f} "
              f"{(figures['Shared_Clean'] + figures['Shared_Dirty']) / 1e6:7.0f} {private / 1e6:8.0f} "
              f"{figures['Anonymous'] / 1e6:7.0f}")
    worst = max(f["Private_Clean"] + f["Private_Dirty"] for f in shared)
    print(f"  private per process at most {worst / 1e6:.0f} MB (the interpreter, pydantic and pyarrow included); "
          f"goal: the snapshot's arrays shared, not private: {'ok' if worst < files.get('beliefs.arrow', 0) / 4 else 'MISSED'}")
    store = BeliefStore.open(folder, watch=False)

    rng = random.Random(args.seed)
    known = [f"u{i:07d}" for i in range(store.users)]
    users = [rng.choice(known) if rng.random() < 0.9 else f"unknown-{rng.randrange(10**9)}" for _ in range(args.lookups)]
    gc.collect()

    # The same snapshot as one published before beliefs.arrow (the Parquet decoded, a dict as the index),
    # measured in the same blocks as the mapped one, alternately: the machine's load falls on both alike.
    before, started = smaps_rollup(), time.perf_counter()
    legacy = BeliefStore.open(legacy_folder, watch=False)
    opened = time.perf_counter() - started
    gc.collect()
    grown = {name: smaps_rollup()[name] - before[name] for name in ("Private_Dirty", "Rss")}
    print(f"\nthe same snapshot as before beliefs.arrow (Parquet decoded, a dict as the index), for comparison: open "
          f"{opened:.2f} s in this process, {grown['Private_Dirty'] / 1e6:.0f} MB more private memory")
    query = "How do I prepare a Bell state on two qubits?"
    print(f"\nlatency over {args.lookups:,} calls each (random users, 10 % unknown), in-process, wall clock, in blocks\n"
          f"of 10,000 alternating between the mapped store and the same snapshot decoded from Parquet (as before);\n"
          f"then the calling thread's CPU time (without the time other processes on the machine took):")
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns
    for name, calls, goal in (("get", {"mapped": store.get, "Parquet decode": legacy.get}, 3),
                              ("enrich", {"mapped": lambda user: store.enrich(query, user),
                                          "Parquet decode": lambda user: legacy.enrich(query, user)}, 100)):
        samples = {label: [] for label in calls}
        for start in range(0, len(users), 10_000):
            for label, call in calls.items():
                block = users[start:start + 10_000]
                for user in block[:1000]:  # warm up
                    call(user)
                samples[label] += timed(call, block, clock)
        for label, taken in samples.items():
            stats = percentiles(taken)
            show(f"{name} ({label})", stats, f"goal p99 <= {goal}: {'ok' if stats['p99'] <= goal else 'MISSED'}"
                 if label == "mapped" else "(as before)")
        show(f"{name} (mapped, cpu)", percentiles(timed(calls["mapped"], users, cpu)))
    legacy.close()
    del legacy
    gc.collect()
    get, enrich = store.get, store.enrich
    samples = []
    for user in users[: args.lookups // 4]:
        t0 = clock()
        list(get(user).beliefs)
        samples.append(clock() - t0)
    show("get + read every belief", percentiles(samples), "(reference: builds one pydantic Belief per row)")
    used = sum(len(enrich(query, user).beliefs_used) for user in users)
    print(f"  (on average {used / len(users):.1f} beliefs used per enrichment, at most 12)")

    # Reload: a second version (same beliefs, later creation: a new folder), then CURRENT moved between
    # the two as a publish or a rollback moves it; each time refresh() loads and swaps in the other one.
    second = publish_table(folder, _reload_table(folder, version), data_as_of=AS_OF + timedelta(days=1),
                           created=datetime.now(timezone.utc) + timedelta(seconds=1))
    store.refresh()
    gc.collect()
    time.sleep(1)
    reloads = []
    for target in (version, second, version):
        switch_current(folder, target)
        started = time.perf_counter()
        swapped = store.refresh()
        reloads.append(time.perf_counter() - started)
        assert swapped and store.version == target
    print("\nreload (refresh() after CURRENT moved to another version), 3 runs: "
          + ", ".join(f"{t:.3f} s" for t in reloads) + f"   goal <= 0.2 s: {'ok' if max(reloads) <= 0.2 else 'MISSED'}")
    store.close()

    # get latency while the watcher thread loads a new version in the background.
    watched = BeliefStore.open(folder, watch=True, poll_interval=0.05)
    switch_current(folder, second)
    samples = []
    deadline = time.monotonic() + 10
    index = 0
    while watched.version != second and time.monotonic() < deadline or not samples:
        user = users[index % len(users)]
        index += 1
        t0 = clock()
        watched.get(user)
        samples.append(clock() - t0)
    print(f"get while the watcher reloads in the background ({len(samples):,} calls until the swap):")
    show("get during reload", percentiles(samples), "(the loader holds the GIL while it maps and checks)")
    watched.close()
    print(f"\nthreads: {threading.active_count()}; peak RSS {_peak_rss() / 1e9:.2f} GB; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def _legacy_copy(folder: Path, version: str, legacy: Path) -> Path:
    """A snapshots folder holding `version` as published before beliefs.arrow: its Parquet file (a hard link)
    and a manifest without served_files."""
    shutil.rmtree(legacy, ignore_errors=True)
    (legacy / version).mkdir(parents=True)
    os.link(folder / version / "beliefs.parquet", legacy / version / "beliefs.parquet")
    manifest = json.loads((folder / version / "manifest.json").read_text())
    manifest.pop("served_files", None)
    (legacy / version / "manifest.json").write_text(json.dumps(manifest))
    (legacy / "CURRENT").write_text(version + "\n")
    return legacy


def _reload_table(folder: Path, version: str):
    import pyarrow.parquet as pq

    return pq.read_table(folder / version / "beliefs.parquet")


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
