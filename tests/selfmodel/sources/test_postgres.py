"""Format postgres against a real PostgreSQL server (tests/postgres_server.py): exact accounting, incremental
reads from the cursor watermark, rows sharing it or committing late under it loaded once, the watermark moving
only with a committed batch, and the connection string's password nowhere."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from selfmodel.sources.postgres import Watermark, read_from
from tests.postgres_server import PLANTED_PASSWORD
from tests.selfmodel.test_ingest import assert_every_batch_balances, counts, query

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)
CLOCK = FixedClock(NOW)
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)

EVENTS_TABLE = """
create table app.chat_events (
    id          bigserial primary key,
    user_ref    text,
    body        text,
    kind        text not null default 'message',
    created_at  timestamptz not null,
    meta        jsonb
)"""


@pytest.fixture
def database(postgres_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database with schema `app`; its DSN (with the planted password) in $APP_DB_DSN."""
    dsn = postgres_server.create_database(f"t_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("create schema app")
        conn.execute(EVENTS_TABLE)
    monkeypatch.setenv("APP_DB_DSN", dsn)
    return dsn


def insert(dsn: str, rows: list[tuple]) -> None:
    """rows: (id or None, user_ref, body, created_at)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for row_id, user, body, created_at in rows:
            if row_id is None:
                conn.execute("insert into app.chat_events (user_ref, body, created_at, meta) values (%s, %s, %s, %s)",
                             [user, body, created_at, json.dumps({"lang": "en"})])
            else:
                conn.execute("insert into app.chat_events (id, user_ref, body, created_at, meta) "
                             "values (%s, %s, %s, %s, %s)", [row_id, user, body, created_at, json.dumps({"lang": "en"})])


def postgres_source(**options) -> dict:
    return {"name": "app", "format": "postgres",
            "postgres": {"dsn_env": "APP_DB_DSN", "table": "app.chat_events", "cursor": "id", **options},
            "mapping": {"event_id": "id", "user_id": "user_ref", "text": "body", "occurred_at": "created_at"}}


def test_a_table_ingests_with_exact_accounting_and_a_second_run_reads_nothing_new(database, make_settings) -> None:
    insert(database, [(None, "u1", "hello", T0), (None, "u2", "hi there", T0 + timedelta(minutes=1)),
                      (None, None, "whose is this?", T0 + timedelta(minutes=2)),  # no user: quarantined
                      (None, "u1", "again", T0 + timedelta(minutes=3))])
    settings = make_settings([postgres_source()])
    [first] = ingest(settings, clock=CLOCK)
    assert first.status == "committed", first.error
    assert counts(first) == (4, 3, 0, 1)
    assert query(settings, "select event_id, user_id, text, attributes->>'$.meta.lang' from events order by 1") == [
        ("1", "u1", "hello", "en"), ("2", "u2", "hi there", "en"), ("4", "u1", "again", "en")]
    assert query(settings, "select file, reason from quarantine") == [("postgres:app.chat_events", "missing_user_id")]
    assert query(settings, "select cursor_column, value_type, watermark from ingest_cursors") == [("id", "int", "4")]
    [second] = ingest(settings, clock=CLOCK)
    # Only the row at the watermark is read again (>=: rows sharing its value are never skipped): a duplicate.
    assert counts(second) == (1, 0, 1, 0)
    assert_every_batch_balances(settings)


def test_rows_inserted_between_runs_and_a_late_one_under_the_cursor_load_once(database, make_settings) -> None:
    insert(database, [(None, "u1", "first", T0), (None, "u1", "second", T0 + timedelta(seconds=10))])
    source = postgres_source(cursor="created_at", lookback=60)
    settings = make_settings([source])
    [first] = ingest(settings, clock=CLOCK)
    assert counts(first) == (2, 2, 0, 0)
    # Between runs: a newer row, one sharing the watermark's time, and one committed late with an older time.
    insert(database, [(None, "u2", "newer", T0 + timedelta(seconds=30)),
                      (None, "u3", "same time as the watermark", T0 + timedelta(seconds=10)),
                      (None, "u4", "late, under the cursor", T0 + timedelta(seconds=5))])
    [second] = ingest(settings, clock=CLOCK)
    # Read again within the lookback: both first rows (duplicates); new: the three inserted.
    assert counts(second) == (5, 3, 2, 0)
    [third] = ingest(settings, clock=CLOCK)
    assert third.loaded == 0 and third.rows_read == third.duplicates
    texts = [row[0] for row in query(settings, "select text from events order by occurred_at, event_id")]
    assert texts == ["first", "late, under the cursor", "second", "same time as the watermark", "newer"]
    assert query(settings, "select count(*), count(distinct event_id) from events") == [(5, 5)]
    assert_every_batch_balances(settings)


def test_a_row_sharing_the_watermarks_value_is_not_lost_without_lookback(database, make_settings) -> None:
    insert(database, [(None, "u1", "first", T0)])
    settings = make_settings([postgres_source(cursor="created_at")])
    ingest(settings, clock=CLOCK)
    insert(database, [(None, "u2", "same time, committed after the batch", T0)])
    [second] = ingest(settings, clock=CLOCK)
    assert counts(second) == (2, 1, 1, 0)
    assert query(settings, "select watermark, value_type from ingest_cursors") == [(T0.isoformat(), "timestamptz")]


def test_the_watermark_moves_only_when_the_batch_commits(database, make_settings) -> None:
    insert(database, [(None, "u1", f"message {n}", T0 + timedelta(minutes=n)) for n in range(6)])
    # The query fails on the fourth row, after the first chunks were stored in the batch's transaction.
    failing = ("select id, user_ref, body, created_at, 1 / (4 - id)::int as boom from app.chat_events")
    settings = make_settings([{**postgres_source(), "postgres": {"dsn_env": "APP_DB_DSN", "query": failing,
                                                                  "cursor": "id"}}],
                             ingest={"chunk_records": 2})
    [failed] = ingest(settings, clock=CLOCK)
    assert failed.status == "failed" and "division by zero" in failed.error and not failed.retryable
    assert query(settings, "select count(*) from events") == [(0,)]
    assert query(settings, "select count(*) from ingest_cursors") == [(0,)]
    fixed = make_settings([postgres_source()], ingest={"chunk_records": 2})
    [report] = ingest(fixed, clock=CLOCK)
    assert counts(report) == (6, 6, 0, 0)
    assert query(fixed, "select watermark from ingest_cursors") == [("6",)]


def test_rows_of_conversations_become_chat_events(database, make_settings) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("create table app.conversations (id text primary key, account text, started timestamptz, "
                     "messages jsonb, updated_at timestamptz not null)")
        messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "I love Rust"},
                    {"role": "assistant", "content": "Great choice"}]
        conn.execute("insert into app.conversations values ('c1', 'u1', %s, %s, %s), ('c2', 'u2', %s, %s, %s)",
                     [T0, json.dumps(messages), T0, T0, json.dumps([]), T0])
    settings = make_settings([{"name": "chats", "format": "postgres",
                               "postgres": {"dsn_env": "APP_DB_DSN", "table": "app.conversations",
                                            "cursor": "updated_at", "rows": "chat"},
                               "mapping": {"session_id": "id", "user_id": "account", "occurred_at": "started"}}])
    [report] = ingest(settings, clock=CLOCK)
    assert counts(report) == (2, 1, 0, 1) and report.events_loaded == 2
    assert query(settings, "select event_id, kind, text from events order by event_id") == [
        ("c1:1", "message", "I love Rust"), ("c1:2", "response", "Great choice")]
    assert query(settings, "select reason from quarantine") == [("empty_conversation",)]
    [again] = ingest(settings, clock=CLOCK)
    assert counts(again) == (2, 0, 2, 0)
    assert_every_batch_balances(settings, conversations=True)


def test_an_unreachable_server_is_retryable_and_bad_sql_is_not(postgres_server, make_settings, monkeypatch) -> None:
    closed = postgres_server.dsn().replace(f":{postgres_server.port}/", ":1/")
    monkeypatch.setenv("APP_DB_DSN", closed)
    settings = make_settings([postgres_source(connect_timeout_seconds=2)])
    [unreachable] = ingest(settings, clock=CLOCK)
    assert unreachable.status == "failed" and unreachable.retryable
    monkeypatch.setenv("APP_DB_DSN", postgres_server.dsn())
    [missing] = ingest(make_settings([postgres_source(table="app.no_such_table")]), clock=CLOCK)
    assert missing.status == "failed" and not missing.retryable
    assert 'relation "app.no_such_table" does not exist' in missing.error
    monkeypatch.setenv("APP_DB_DSN", postgres_server.dsn(password="wrong-password-123"))
    [refused] = ingest(settings, clock=CLOCK)
    assert refused.status == "failed" and not refused.retryable
    assert 'password authentication failed for user "postgres"' in refused.error


def test_a_missing_dsn_variable_fails_the_batch_in_one_line(make_settings, monkeypatch) -> None:
    monkeypatch.delenv("APP_DB_DSN", raising=False)
    [report] = ingest(make_settings([postgres_source()]), clock=CLOCK)
    assert report.status == "failed"
    assert report.error == "MissingDsn: environment variable APP_DB_DSN (postgres.dsn_env) is not set or empty"


def test_the_read_is_read_only(database, make_settings) -> None:
    # A query that would write is refused by the read-only transaction, and writes nothing.
    writing = "select id, user_ref, body, created_at, nextval('app.chat_events_id_seq') from app.chat_events"
    insert(database, [(None, "u1", "keep me", T0)])
    settings = make_settings([{**postgres_source(), "postgres": {"dsn_env": "APP_DB_DSN", "query": writing,
                                                                  "cursor": "id"}}])
    [report] = ingest(settings, clock=CLOCK)
    assert report.status == "failed" and "read-only transaction" in report.error
    with psycopg.connect(database) as conn:
        assert conn.execute("select last_value from app.chat_events_id_seq").fetchone() == (1,)


def test_a_row_larger_than_max_record_bytes_is_quarantined(database, make_settings) -> None:
    insert(database, [(None, "u1", "short", T0), (None, "u1", "long " * 100, T0)])
    settings = make_settings([postgres_source()], ingest={"max_record_bytes": 300})
    [report] = ingest(settings, clock=CLOCK)
    assert counts(report) == (2, 1, 0, 1)
    [(reason, detail)] = query(settings, "select reason, detail from quarantine")
    assert reason == "record_too_large" and detail.endswith("the limit is ingest.max_record_bytes=300")


@pytest.mark.parametrize("watermark, lookback, start", [
    (Watermark("int", "100"), 10, 90),
    (Watermark("timestamptz", "2024-06-01T12:00:00+00:00"), 30, datetime(2024, 6, 1, 11, 59, 30, tzinfo=timezone.utc)),
    (Watermark("text", "b"), 0, "b"),
    (None, 10, None),
])
def test_read_from_is_the_watermark_less_the_lookback(watermark, lookback, start) -> None:
    assert read_from(watermark, lookback) == start
