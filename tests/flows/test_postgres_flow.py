"""The ingest flow reads a postgres source whose connection string is kept in a Prefect Secret block; the
password is in none of the flow run's logs (as the Prefect API stores them), results or tables."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import psycopg

from tests.postgres_server import PLANTED_PASSWORD
from tests.selfmodel.test_ingest_secrets import every_table_as_text


def flow_run_logs() -> str:
    """Every log line the session's Prefect server holds. Runs send logs in batches, so they are flushed first;
    and the API answers at most a page of them (200 by default, fewer than a busy session's), so all pages are
    read: with the suite spread over processes the first page sometimes ended before this test's lines."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the batch worker is shared: any handler flushes it

    async def read():
        logs = []
        async with get_client() as client:
            while page := await client.read_logs(offset=len(logs), limit=200):
                logs += page
        return logs

    return "\n".join(log.message for log in asyncio.run(read()))


def test_the_ingest_flow_reads_a_dsn_from_a_prefect_secret_block(prefect_server, postgres_server,
                                                                 tmp_path: Path) -> None:
    from prefect.blocks.system import Secret

    from flows.ingest import ingest

    dsn = postgres_server.create_database(f"f_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create table chat_events (id int primary key, account text, body text, sent timestamptz)")
        conn.execute("insert into chat_events values (1, 'u1', 'hi', '2024-06-01T12:00:00Z'), "
                      "(2, 'u2', 'hello', '2024-06-01T12:01:00Z')")
    block = f"app-db-dsn-{uuid.uuid4().hex[:6]}"
    Secret(value=dsn).save(block, overwrite=True)
    config = tmp_path / "selfmodel.yaml"
    config.write_text(json.dumps({
        "warehouse": {"path": "wh.duckdb"},
        "sources": [{"name": "app_db", "format": "postgres",
                     "postgres": {"dsn_secret_block": block, "table": "chat_events", "cursor": "id"},
                     "mapping": {"event_id": "id", "user_id": "account", "text": "body", "occurred_at": "sent"},
                     "defaults": {"kind": "message"}}]}))
    [report] = ingest(config_path=str(config))
    assert (report["rows_read"], report["loaded"]) == (2, 2)
    [again] = ingest(config_path=str(config))
    assert (again["rows_read"], again["loaded"], again["duplicates"]) == (1, 0, 1)
    logs = flow_run_logs()
    assert "2 rows read -> 2 loaded" in logs  # the task's count line reached the API
    for text in (logs, json.dumps([report, again]), every_table_as_text(tmp_path / "wh.duckdb")):
        assert PLANTED_PASSWORD not in text
