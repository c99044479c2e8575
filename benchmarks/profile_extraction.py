"""Profile: how fast a full refresh's extraction runs and where its time goes, per extractor (run on demand, not in
the test suite). Issue 14's goal: >= 40,000 events/s on 2 cores.

Generates the refresh benchmark's synthetic events into a fresh warehouse, then:
  1. runs the extractors over the queued pages both ways in this one process, alternately: event by event (each
     extractor called on each event, as before issue 14) and page at a time (observe.observations_of_page, what
     refresh uses), and prints events/s of each, their ratio, and the page path's 2-core figure beside the goal;
  2. runs one full refresh in one worker process under cProfile and prints the cumulative time of each extractor
     and of the page loop, then the functions with the most time of their own.

    python benchmarks/profile_extraction.py --events 100000 --users 20000 --workdir /tmp/profile-extraction

On a shared machine absolute figures are noisy; the ratio of the two paths, measured side by side, is less so.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import refresh as refresh_benchmark  # noqa: E402  (benchmarks/refresh.py: its event generator)

from selfmodel.beliefs.extractors import fact, role, text  # noqa: E402
from selfmodel.beliefs.observe import (FETCH_ROWS, enabled_extractors, observation_table,  # noqa: E402
                                       observations_of_page_event_by_event, observations_of_table,
                                       queue_events_to_extract)
from selfmodel.beliefs.refresh import refresh_beliefs  # noqa: E402
from selfmodel.clock import FixedClock  # noqa: E402
from selfmodel.settings import load_settings  # noqa: E402
from warehouse.db import connect, load_sql  # noqa: E402

GOAL_EVENTS_PER_SECOND = 40_000
CORES = 2


def forget_cached_texts(extractors: list) -> None:
    """Each path starts cold: the text caches would otherwise carry one path's work into the other's time."""
    text.clean.cache_clear()
    text._own_statements.cache_clear()
    fact.normalise_fact.cache_clear()
    for extractor in extractors:
        if isinstance(extractor, role.RoleExtractor):
            extractor.looked_up.clear()


def side_by_side(con, settings, rounds: int) -> None:
    """Both paths over the same pages, each as refresh runs it: read a page from DuckDB, extract, make the Arrow
    table of its observations (the insert, the same for both, is left out). Best of `rounds` each."""
    queued = queue_events_to_extract(con, everything=True)
    firsts = range(1, queued + 1, FETCH_ROWS)
    page_sql = load_sql("extract_queue_page")
    extractors = enabled_extractors(settings)
    weights = {x.name: settings.beliefs.extractor(x.name).weight for x in extractors}

    def event_by_event() -> int:  # as before issue 14: rows as Python tuples, each extractor on each event
        observations = 0
        for first in firsts:
            cursor = con.execute(page_sql, {"first": first, "last": first + FETCH_ROWS - 1})
            names, rows = [column[0] for column in cursor.description], cursor.fetchall()
            observations += observation_table(observations_of_page_event_by_event(extractors, weights, names,
                                                                                  rows)).num_rows
        return observations

    def page_at_a_time() -> int:  # observe.extract_pending's loop
        observations, seen = 0, {}
        for first in firsts:
            page = con.sql(page_sql, params={"first": first, "last": first + FETCH_ROWS - 1}).to_arrow_table()
            observations += observations_of_table(extractors, weights, page, seen).num_rows
        return observations

    page = con.sql(page_sql, params={"first": 1, "last": 100}).to_arrow_table()
    observations_of_table(extractors, weights, page)  # load the language model outside the timing
    paths = {"event by event (before)": event_by_event, "page at a time (refresh)": page_at_a_time}
    best = {label: float("inf") for label in paths}
    observations = {}
    for round_ in range(rounds):
        for label, path in (paths.items() if round_ % 2 == 0 else reversed(paths.items())):
            forget_cached_texts(extractors)
            started = time.perf_counter()
            observations[label] = path()
            best[label] = min(best[label], time.perf_counter() - started)
    con.execute("drop table extract_queue").fetchall()
    print(f"extraction of {queued:,} events in one process, best of {rounds} (observations: "
          f"{' = '.join(f'{n:,}' for n in observations.values())})")
    for label, seconds in best.items():
        print(f"  {label:28} {seconds:7.2f} s  {queued / seconds:9,.0f} events/s per core")
    before, after = best.values()
    page_rate = queued / after
    print(f"  speed-up                     {before / after:7.2f}x  (the extractors' own changes, which both "
          f"paths share, not included: compare with git main for those)")
    print(f"  page at a time on {CORES} cores   ~{CORES * page_rate:,.0f} events/s if both cores are free "
          f"(goal >= {GOAL_EVENTS_PER_SECOND:,}: {CORES * page_rate / GOAL_EVENTS_PER_SECOND:.0%} of it)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/selfmodel-profile-extraction"))
    parser.add_argument("--rounds", type=int, default=2, help="timings of each path in the side-by-side run")
    parser.add_argument("--top", type=int, default=20, help="functions listed by their own time")
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    # One worker: a profile of this process is a profile of all the extraction.
    (args.workdir / "selfmodel.yaml").write_text(
        "warehouse: {path: wh.duckdb, analyst_copy: null}\nsources: []\nbeliefs: {as_of: now, extract_workers: 1}\n")
    settings = load_settings(args.workdir / "selfmodel.yaml", environ={})
    con = connect(settings.warehouse_path)
    refresh_benchmark.generate(con, 1, args.events, args.users)
    as_of = refresh_benchmark.START + timedelta(days=refresh_benchmark.DAYS)

    side_by_side(con, settings, args.rounds)

    forget_cached_texts(enabled_extractors(settings))
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    report = refresh_beliefs(con, settings, as_of=as_of, full=True, clock=FixedClock(as_of))
    profile.disable()
    seconds = time.perf_counter() - started
    con.close()
    print(f"full refresh of {args.events:,} events under cProfile: {seconds:.1f} s "
          f"({report.observations_extracted:,} observations)\n")

    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if ("/extractors/" in filename and name in ("__call__", "findings_of_many")) \
                or name in ("observations_of_table", "_pages", "flush", "clean", "_own_statements"):
            rows.append((cumulative, f"{Path(filename).stem}.{name}"))
    total = sum(cumulative for cumulative, part in rows if part.split(".")[1] in ("observations_of_table", "_pages",
                                                                                  "flush")) or seconds
    print(f"{'part (share of pages + extraction + flush; text.* are inside the extractors)':58} "
          f"{'cumulative s':>12} {'share':>6}")
    for cumulative, part in sorted(rows, reverse=True):
        print(f"{part:58} {cumulative:12.2f} {cumulative / total:6.0%}")
    print()
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
