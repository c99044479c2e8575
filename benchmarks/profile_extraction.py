"""Profile: where a full refresh's extraction time goes, per extractor (run on demand, not in the test suite).

Generates the refresh benchmark's synthetic events into a fresh warehouse, then runs one full refresh in one
worker process under cProfile and prints the cumulative time of each extractor and of the extraction loop,
then the functions with the most time of their own.

    python benchmarks/profile_extraction.py --events 100000 --users 20000 --workdir /tmp/profile-extraction
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

from selfmodel.beliefs.refresh import refresh_beliefs  # noqa: E402
from selfmodel.clock import FixedClock  # noqa: E402
from selfmodel.settings import load_settings  # noqa: E402
from warehouse.db import connect  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/selfmodel-profile-extraction"))
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
        if ("/extractors/" in filename and name == "__call__") or name in ("observations_of_page", "flush"):
            rows.append((cumulative, f"{Path(filename).stem}.{name}"))
    total = max((cumulative for cumulative, _ in rows), default=seconds)
    print(f"{'part':40} {'cumulative s':>12} {'share':>6}")
    for cumulative, part in sorted(rows, reverse=True):
        print(f"{part:40} {cumulative:12.2f} {cumulative / total:6.0%}")
    print()
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
