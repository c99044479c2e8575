"""The DSN's password and the storage secret key, planted in the environment, appear in no warehouse table,
no log record and no CLI output: on batches that commit and on batches that fail."""

from __future__ import annotations

import json
import logging
import uuid

import duckdb
import psycopg
import pytest
from click.testing import CliRunner

from selfmodel.cli import main
from tests.postgres_server import PLANTED_PASSWORD
from tests.s3_server import PLANTED_SECRET_KEY

CONFIG = """
warehouse: {path: wh.duckdb}
sources:
  - name: app_db
    format: postgres
    postgres: {dsn_env: APP_DB_DSN, table: %(table)s, cursor: id}
    mapping: {event_id: id, user_id: user_ref, text: body, occurred_at: created_at}
    defaults: {kind: message}
  - {name: app_bucket, format: jsonl, path: "s3://logs/app/*.jsonl"}
"""


def every_table_as_text(path) -> str:
    """Every value of every column of every table of the warehouse, as text."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [name for (name,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'").fetchall()]
        assert {"events", "quarantine", "ingest_batches", "ingest_files", "ingest_cursors"} <= set(tables)
        return "\n".join(str(con.execute(f'select * from "{name}"').fetchall()) for name in tables)
    finally:
        con.close()


@pytest.mark.parametrize("table, dsn_typo", [
    ("app.events", False),
    ("app.no_such_table", False),  # the batch fails: PostgreSQL's error is kept and shown
    ("app.events", True),  # a DSN missing its ':' fails to parse, and libpq quotes all of it in its error
])
def test_planted_credentials_are_in_no_table_log_or_output(table, dsn_typo, tmp_path, postgres_server, s3_server,
                                                           monkeypatch, caplog) -> None:
    import s3fs

    dsn = postgres_server.create_database(f"s_{uuid.uuid4().hex[:10]}")
    assert PLANTED_PASSWORD in dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create schema app")
        conn.execute("create table app.events (id int primary key, user_ref text, body text, created_at timestamptz)")
        conn.execute("insert into app.events values (1, 'u1', 'hi', '2024-06-01T12:00:00Z'), "
                     "(2, null, 'no user', '2024-06-01T12:01:00Z')")
    monkeypatch.setenv("APP_DB_DSN", dsn.replace("postgresql:", "postgresql") if dsn_typo else dsn)
    fs = s3fs.S3FileSystem()
    fs.mkdir("logs")
    fs.pipe("logs/app/a.jsonl", b'{"event_id": "a1", "user_id": "u1", "occurred_at": "2024-06-01T12:00:00Z", '
                                b'"kind": "message", "text": "hello"}\n{broken\n')
    config = tmp_path / "selfmodel.yaml"
    config.write_text(CONFIG % {"table": table})
    caplog.set_level(logging.DEBUG)
    outputs = []
    for arguments in (["ingest", "--json"], ["ingest"], ["quarantine", "--json"], ["quarantine"]):
        result = CliRunner().invoke(main, ["--config", str(config), *arguments])
        outputs.append(result.output + (result.stderr if result.stderr_bytes is not None else ""))
    postgres_batch = json.loads(outputs[0])["batches"][0]
    if dsn_typo:
        assert postgres_batch["error"] == 'PostgresSourceError: postgres: missing "=" after "…" in connection info string'
    elif table == "app.events":
        assert (postgres_batch["loaded"], postgres_batch["quarantined"]) == (1, 1)
    else:
        assert 'relation "app.no_such_table" does not exist' in postgres_batch["error"]
    logs = "\n".join(record.getMessage() + str(record.exc_info or "") for record in caplog.records)
    tables = every_table_as_text(tmp_path / "wh.duckdb")
    for secret in (PLANTED_PASSWORD, PLANTED_SECRET_KEY):
        for where, text in (("tables", tables), ("logs", logs), ("output", "\n".join(outputs))):
            assert secret not in text, where
