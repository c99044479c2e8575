"""Benchmark a format postgres source against a bare psycopg `COPY (query) TO STDOUT` of the same rows.

    python benchmarks/postgres_ingest.py --rows 1000000 --rss-rows 250000

Starts a throwaway PostgreSQL server (tests/postgres_server.py: the machine's binaries), fills a table with
--rows chat events (id, user, text, time, a jsonb column), then, each in a child process of its own so its
peak RSS is its own:

  * bare COPY:  psycopg `COPY (select * from app.events) TO STDOUT` read to the end (the floor);
  * reader:     the postgres reader alone (fetch through the server-side cursor into Arrow chunks, nothing stored);
  * ingest():   selfmodel.ingest.ingest(settings) of the same table into a new warehouse (imports excluded);
  * jsonl:      the same rows as a JSONL file, ingested as a file source (the pipeline every source shares);

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


def child_read(dsn: str, rows: int) -> dict:
    """The postgres reader alone (fetch, Arrow chunks), nothing stored: the source's own speed and memory."""
    os.environ["BENCH_DSN"] = dsn
    from selfmodel.settings import PostgresSettings
    from selfmodel.sources.postgres import PostgresReader

    reader = PostgresReader(PostgresSettings(dsn_env="BENCH_DSN", table=f"app.events_{rows}", cursor="id"),
                            chunk_records=100_000, max_record_bytes=1_000_000)
    started = time.perf_counter()
    count = sum(chunk.num_rows for chunk in reader.read(None, []))
    return {"seconds": time.perf_counter() - started, "rows": count, "peak_rss_mb": peak_rss_mb()}


def child_jsonl(dsn: str, rows: int, workdir: str) -> dict:
    """The same rows as a JSONL file (written untimed), ingested as a file source: the shared pipeline's speed."""
    import psycopg

    from selfmodel.ingest import ingest
    from selfmodel.settings import load_settings

    path = Path(workdir) / f"events-{rows}.jsonl"
    with psycopg.connect(dsn) as conn, open(path, "w", encoding="utf-8") as out:
        with conn.cursor().copy(f"copy (select row_to_json(r)::text from app.events_{rows} r) to stdout "
                                "with (format csv, quote e'\\x01', delimiter e'\\x02')") as copy:
            for block in copy:
                out.write(bytes(block).decode())
    config = Path(workdir) / f"selfmodel-jsonl-{rows}.yaml"
    config.write_text(json.dumps({
        "warehouse": {"path": f"wh-jsonl-{rows}.duckdb"},
        "sources": [{"name": "file", "format": "jsonl", "path": str(path),
                     "mapping": {"event_id": "id", "user_id": "user_ref", "text": "body",
                                 "occurred_at": "created_at"}}]}))
    settings = load_settings(config)
    started = time.perf_counter()
    [report] = ingest(settings)
    return {"seconds": time.perf_counter() - started, "rows_read": report.rows_read, "peak_rss_mb": peak_rss_mb()}


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
        children = {"copy": child_copy, "read": child_read, "ingest": child_ingest, "jsonl": child_jsonl}
        result = children[kind](dsn, int(rows), *rest)
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
            reads, files = {}, {}
            for n in sizes:
                copy = in_child("copy", dsn, n)
                reads[n] = in_child("read", dsn, n)
                ingested = in_child("ingest", dsn, n, workdir)
                files[n] = in_child("jsonl", dsn, n, workdir)
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
        print("the parts of it, same rows:")
        for n in sizes:
            print(f"{n:>10} postgres reader alone (fetch + Arrow, nothing stored): {n / reads[n]['seconds']:>9,.0f} rows/s, "
                  f"ratio to COPY {results[n][0]['seconds'] / reads[n]['seconds']:.2f}, peak {reads[n]['peak_rss_mb']:.0f} MB")
            print(f"{n:>10} the same rows as a JSONL file source (ingest):          {n / files[n]['seconds']:>9,.0f} rows/s, "
                  f"peak {files[n]['peak_rss_mb']:.0f} MB")
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
