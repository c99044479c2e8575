"""Benchmark a format postgres source against a bare psycopg `COPY (query) TO STDOUT` of the same rows.

    python benchmarks/postgres_ingest.py --rows 1000000 --rss-rows 250000

Starts a throwaway PostgreSQL server (tests/postgres_server.py: the machine's binaries), fills a table with
--rows chat events (id, user, text, time, a jsonb column), then, each in a child process of its own so its
peak RSS is its own:

  * bare COPY:  psycopg `COPY (select * from app.events) TO STDOUT` read to the end (the floor);
  * ingest():   selfmodel.ingest.ingest(settings) of the same table into a new warehouse (imports excluded);

and prints rows/s, the ratio to COPY (goal >= 0.5) and peak RSS; the ingest is repeated on a table of
--rss-rows rows to show memory does not grow with the table. Checks every row is accounted for.
Run on demand; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

FILL = """
create schema if not exists app;
drop table if exists app.events_{n};
create table app.events_{n} as
select g as id,
       'u' || (g % 5000) as user_ref,
       'message number ' || g || ' about quantum circuits and coffee' as body,
       case when g % 3 = 0 then 'response' else 'message' end as kind,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' as created_at,
       jsonb_build_object('client', 'web', 'n', g) as meta
from generate_series(1, {n}) as g;
alter table app.events_{n} add primary key (id);
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_copy(dsn: str, rows: int) -> dict:
    import psycopg

    started = time.perf_counter()
    size = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        with cursor.copy(f"copy (select * from app.events_{rows}) to stdout") as copy:
            for block in copy:
                size += len(block)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": size, "peak_rss_mb": peak_rss_mb()}


def child_ingest(dsn: str, rows: int, workdir: str) -> dict:
    os.environ["BENCH_DSN"] = dsn
    from selfmodel.ingest import ingest
    from selfmodel.settings import load_settings

    config = Path(workdir) / f"selfmodel-{rows}.yaml"
    config.write_text(json.dumps({
        "warehouse": {"path": f"wh-{rows}.duckdb"},
        "sources": [{"name": "app", "format": "postgres",
                     "postgres": {"dsn_env": "BENCH_DSN", "table": f"app.events_{rows}", "cursor": "id"},
                     "mapping": {"event_id": "id", "user_id": "user_ref", "text": "body",
                                 "occurred_at": "created_at"}}]}))
    settings = load_settings(config)
    before = peak_rss_mb()
    started = time.perf_counter()
    [report] = ingest(settings)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "rss_before_mb": before, "status": report.status,
            "rows_read": report.rows_read, "loaded": report.loaded, "duplicates": report.duplicates,
            "quarantined": report.quarantined, "error": report.error}


def in_child(kind: str, *args) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", kind, *map(str, args)], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rss-rows", type=int, default=250_000)
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind, dsn, rows, *rest = args.child
        result = child_copy(dsn, int(rows)) if kind == "copy" else child_ingest(dsn, int(rows), *rest)
        print(json.dumps(result))
        return 0

    import psycopg

    from tests.postgres_server import PostgresServer

    server = PostgresServer().start()
    failed = False
    try:
        dsn = server.dsn()
        sizes = sorted({args.rss_rows, args.rows})
        with psycopg.connect(dsn, autocommit=True) as conn:
            for n in sizes:
                conn.execute(FILL.format(n=n))
                conn.execute(f"vacuum analyze app.events_{n}")
        with tempfile.TemporaryDirectory() as workdir:
            os.chdir(workdir)
            results = {}
            for n in sizes:
                copy = in_child("copy", dsn, n)
                ingested = in_child("ingest", dsn, n, workdir)
                results[n] = (copy, ingested)
        print(f"{'rows':>10} {'COPY rows/s':>12} {'ingest rows/s':>14} {'ratio':>6} (goal >= 0.50) "
              f"{'COPY peak MB':>13} {'ingest peak MB':>15}")
        for n, (copy, ingested) in results.items():
            ok = (ingested["status"] == "committed" and ingested["rows_read"] == n
                  and ingested["rows_read"] == ingested["loaded"] + ingested["duplicates"] + ingested["quarantined"])
            failed |= not ok
            ratio = copy["seconds"] / ingested["seconds"]
            print(f"{n:>10} {n / copy['seconds']:>12,.0f} {n / ingested['seconds']:>14,.0f} {ratio:>6.2f}"
                  f"{'':>15} {copy['peak_rss_mb']:>13.0f} {ingested['peak_rss_mb']:>15.0f}"
                  + ("" if ok else f"  ACCOUNTING FAILED: {ingested}"))
        small, large = results[sizes[0]][1], results[sizes[-1]][1]
        if len(sizes) > 1:
            growth = large["peak_rss_mb"] - small["peak_rss_mb"]
            print(f"peak RSS {sizes[0]:,} rows -> {sizes[-1]:,} rows: {small['peak_rss_mb']:.0f} -> "
                  f"{large['peak_rss_mb']:.0f} MB ({growth:+.0f} MB for {sizes[-1] / sizes[0]:.0f}x the rows; "
                  "goal: flat)")
    finally:
        server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
