"""warehouse.db: recorded, idempotent migrations; one writer at a time with a clear error."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from warehouse import db
from warehouse.db import (WarehouseBusyError, WarehouseError, connect, memory_limit_while, migrate, quote_identifier, run,
                          size_in_bytes)

MIGRATIONS = Path(db.__file__).parent / "migrations"
REPO_ROOT = Path(db.__file__).resolve().parents[1]


def migration_files() -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest()
            for path in sorted(MIGRATIONS.glob("*.sql"))}


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in con.execute("select table_name from information_schema.tables").fetchall()}


def test_connect_applies_and_records_every_migration_in_order(tmp_path: Path) -> None:
    con = connect(tmp_path / "wh" / "warehouse.duckdb")  # the folder is created
    try:
        recorded = con.execute("select version, checksum from schema_migrations order by version").fetchall()
        assert dict(recorded) == migration_files()
        assert [version for version, _ in recorded] == sorted(migration_files())
        assert {"events", "quarantine", "ingest_batches", "ingest_files", "labels"} <= tables(con)
        assert con.execute("select current_setting('TimeZone')").fetchone()[0] == "UTC"
    finally:
        con.close()


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    con = connect(path)
    con.execute("insert into labels values ('s', 'u', 'persona', 'likes tea', null, null, 'b1')")
    con.close()

    con = connect(path)
    try:
        assert migrate(con) == []
        assert con.execute("select count(*) from schema_migrations").fetchone()[0] == len(migration_files())
        assert con.execute("select value from labels").fetchall() == [("likes tea",)]  # nothing was re-created
    finally:
        con.close()


def test_migrate_reports_what_it_applied(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "plain.duckdb"))
    try:
        assert migrate(con) == sorted(migration_files())
        assert migrate(con) == []
    finally:
        con.close()


def test_a_migration_changed_after_it_was_applied_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    connect(path).close()
    first = sorted(migration_files())[0]
    con = duckdb.connect(str(path))
    # As if the file had been edited since: the recorded checksum no longer matches it.
    con.execute("update schema_migrations set checksum = 'stale' where version = ?", [first])
    con.close()

    with pytest.raises(WarehouseError, match=f"migration {first} changed after it was applied"):
        connect(path)


def test_a_read_only_connection_needs_an_existing_warehouse(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="does not exist yet"):
        connect(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


def test_memory_limit_must_be_a_plain_size(tmp_path: Path) -> None:
    con = connect(tmp_path / "a.duckdb", memory_limit="512MB")
    try:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] in ("488.2 MiB", "512.0 MB")
    finally:
        con.close()
    with pytest.raises(WarehouseError, match="is not a size"):
        connect(tmp_path / "b.duckdb", memory_limit="1GB'; drop table events; --")


def test_sizes_are_read_in_duckdb_s_units() -> None:
    assert size_in_bytes("1GB") == 10**9 and size_in_bytes("1GiB") == 2**30 and size_in_bytes(" 1.5 mb ") == 1_500_000
    assert size_in_bytes("512KiB") == 512 * 1024 and size_in_bytes("100B") == 100
    for bad in ("1iB", "GB", "1 GB'; --", "-1GB"):
        with pytest.raises(WarehouseError, match="is not a size"):
            size_in_bytes(bad)


def test_a_lowered_memory_limit_is_put_back_even_when_the_block_fails(tmp_path: Path) -> None:
    con = connect(tmp_path / "a.duckdb", memory_limit="1GB")
    limit = lambda: con.execute("select current_setting('memory_limit')").fetchone()[0]  # noqa: E731
    try:
        with memory_limit_while(con, "1GB", lambda configured: configured // 4):
            assert limit() == "238.4 MiB"  # 250 MB
        assert limit() == "953.6 MiB"
        with pytest.raises(RuntimeError), memory_limit_while(con, "1GB", lambda configured: configured // 2):
            raise RuntimeError("the extraction failed")
        assert limit() == "953.6 MiB"
        before = limit()
        with memory_limit_while(con, None, lambda configured: 1):  # nothing configured: DuckDB's default stays
            assert limit() == before
    finally:
        con.close()


def test_run_loads_sql_by_name_and_binds_parameters(tmp_path: Path) -> None:
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        assert run(con, "source_watermark", {"source": "nothing"}) == [(None,)]
    finally:
        con.close()


HOLDER = textwrap.dedent("""
    import sys, time
    from warehouse.db import connect
    con = connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def held_warehouse(tmp_path: Path):
    """A warehouse held open for writing by another process; yields (path, that process's pid)."""
    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        line = holder.stdout.readline()
        assert line.strip() == "holding", holder.stderr.read()
        yield path, holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_a_second_writer_fails_fast_with_a_clear_message(held_warehouse) -> None:
    path, holder_pid = held_warehouse

    with pytest.raises(WarehouseBusyError) as error:
        connect(path)

    message = str(error.value)
    assert f"warehouse {path} is in use by process {holder_pid}" in message
    assert "only one writer may run at a time" in message


def test_readers_are_locked_out_too_and_told_so(held_warehouse) -> None:
    path, holder_pid = held_warehouse

    with pytest.raises(WarehouseBusyError, match=f"process {holder_pid}"):
        connect(path, read_only=True)


def test_after_a_writer_exits_the_next_one_gets_in(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    done = subprocess.run([sys.executable, "-c", HOLDER.replace("time.sleep(60)", "con.close()"), str(path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr

    con = connect(path)
    try:
        assert migrate(con) == []
    finally:
        con.close()


def test_migration_0008_redacts_webhook_urls_already_stored_in_alert_errors(tmp_path: Path) -> None:
    """Before 0008 a failed webhook's error quoted the URL whole; a warehouse made then is scrubbed on upgrade."""
    path = tmp_path / "warehouse.duckdb"
    con = connect(path)
    leaked = ("HTTPStatusError: Client error '401 Unauthorized' for url "
              "'https://admin:PASSWORD@hooks.example.org:8443/services/T0/B0/TOKEN?token=TOKEN'")
    rows = [("a1", leaked), ("a2", "ConnectError: http://user:PASSWORD@10.0.0.1"), ("a3", "no url here"), ("a4", None),
            ("a5", "x: http%3A%2F%2Fadmin%3APASSWORD%40host%2Fhook"), ("a6", "x: http://admin:pa#ss@host/hook")]
    for alert_id, error in rows:
        con.execute("insert into alerts values (?, 'i', 's', 'failure', 'o', 'webhook', now(), null, 1, ?, 's', 'b')",
                    [alert_id, error])
    con.execute("delete from schema_migrations where version = '0008_redact_alert_errors.sql'")
    con.close()
    con = connect(path)  # applies 0008 again, as on a warehouse made before it
    try:
        errors = dict(con.execute("select alert_id, last_error from alerts").fetchall())
    finally:
        con.close()
    assert errors == {
        "a1": "HTTPStatusError: Client error '401 Unauthorized' for url 'https://hooks.example.org:8443/…'",
        "a2": "ConnectError: http://10.0.0.1",
        "a3": "no url here",
        "a4": None,
        "a5": "x: http://…",
        "a6": "x: http://host/…",
    }


@pytest.mark.parametrize("name", ['my "wh" \'x\'', "with spaces", '"', '"; drop table t; --', "analyst_export"])
def test_quote_identifier_makes_any_name_one_identifier(name: str) -> None:
    con = duckdb.connect()
    try:
        con.execute(f"attach ':memory:' as {quote_identifier(name)}")
        con.execute(f"create table {quote_identifier(name)}.main.t as select 42 as answer")
        assert con.execute(f"select answer from {quote_identifier(name)}.main.t").fetchall() == [(42,)]
        assert con.execute("select count(*) from duckdb_databases() where database_name = ?", [name]).fetchone() == (1,)
    finally:
        con.close()


def test_joins_as_written_keeps_other_disabled_optimizers_and_puts_the_setting_back(tmp_path: Path) -> None:
    from warehouse.db import joins_as_written

    con = connect(tmp_path / "a.duckdb")
    setting = lambda: {name.strip() for name in  # noqa: E731
                       con.execute("select current_setting('disabled_optimizers')").fetchall()[0][0].split(",")}
    try:
        con.execute("set disabled_optimizers = 'compressed_materialization'")
        with pytest.raises(RuntimeError), joins_as_written(con):
            assert setting() == {"compressed_materialization", "build_side_probe_side"}
            raise RuntimeError("the fold failed")
        assert setting() == {"compressed_materialization"}
    finally:
        con.close()
