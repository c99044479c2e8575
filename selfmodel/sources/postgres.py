"""Format postgres: rows of a PostgreSQL table or query, read on from a cursor watermark.

A batch reads the rows whose cursor column is at or past the stored watermark minus `lookback` (and rows
whose cursor is NULL), inside one read-only REPEATABLE READ transaction with a statement timeout, through a
server-side cursor fetching `ingest.chunk_records` rows at a time (memory stays flat, whatever the table's
size). PostgreSQL itself writes each row as a JSON object (row_to_json), so a row is a record exactly as a
JSONL line is: mapping, defaults and every check of normalize_records.sql apply unchanged.

Rows read again (those sharing the watermark's value, those in the lookback, NULL cursors) are duplicates by
event id (classify_records.sql) and counted so; a row that commits late with a cursor below the watermark is
loaded when it falls within the lookback. The new watermark (the greatest cursor value read) is written by
ingest in the batch's transaction, so it moves only when the batch commits.

The connection string comes from an environment variable or a Prefect Secret block and is never stored,
logged or shown: every error that leaves here is scrubbed of it (selfmodel.redact.scrub).
"""

from __future__ import annotations

import os
from urllib.parse import quote
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from selfmodel.redact import redact_urls, scrub
from selfmodel.sources.base import RECORD_SCHEMA, Label

# The name of the server-side cursor (a portal of the read-only transaction).
PORTAL = "selfmodel_ingest"


class PostgresSourceError(RuntimeError):
    """A postgres source that cannot be read for a reason that will not pass on its own (a bad query, a
    missing table or column, refused credentials, a timeout): its batch fails, saying so in one line."""


class PostgresUnreachable(ConnectionError):
    """The server could not be reached or the connection broke: an OSError, so the Prefect task retries it."""


class MissingDsn(PostgresSourceError):
    """Where the connection string should be, there is none."""


def read_dsn(settings) -> str:
    """The connection string from the environment variable or the Prefect Secret block the source names."""
    if settings.dsn_env is not None:
        dsn = os.environ.get(settings.dsn_env)
        if not dsn:
            raise MissingDsn(f"environment variable {settings.dsn_env} (postgres.dsn_env) is not set or empty")
        return dsn
    from prefect.blocks.system import Secret  # only a source that names a block needs Prefect's API

    try:
        dsn = Secret.load(settings.dsn_secret_block).get()
    except (ValueError, OSError) as exc:
        raise MissingDsn(f"Prefect Secret block {settings.dsn_secret_block!r} (postgres.dsn_secret_block): "
                         f"{scrub(str(exc))}") from None
    if not isinstance(dsn, str) or not dsn:
        raise MissingDsn(f"Prefect Secret block {settings.dsn_secret_block!r} holds no connection string")
    return dsn


@dataclass(frozen=True)
class Watermark:
    """A cursor value as the warehouse keeps it (ingest_cursors): its type name and its text."""

    value_type: str
    text: str

    def value(self) -> Any:
        parse = {"int": int, "decimal": Decimal, "float": float, "timestamp": datetime.fromisoformat,
                 "timestamptz": datetime.fromisoformat, "date": date.fromisoformat, "text": str}
        return parse[self.value_type](self.text)


def watermark_of(value: Any) -> Watermark:
    """How a cursor value read from PostgreSQL is kept."""
    if isinstance(value, bool):
        raise PostgresSourceError("the cursor column is boolean: it cannot grow; name an id or a time column")
    if isinstance(value, int):
        return Watermark("int", str(value))
    if isinstance(value, Decimal):
        return Watermark("decimal", str(value))
    if isinstance(value, float):
        return Watermark("float", repr(value))
    if isinstance(value, datetime):
        return Watermark("timestamptz" if value.tzinfo else "timestamp", value.isoformat())
    if isinstance(value, date):
        return Watermark("date", value.isoformat())
    if isinstance(value, str):
        return Watermark("text", value)
    raise PostgresSourceError(f"the cursor column's values are of type {type(value).__name__}: name a column "
                              "of numbers, times, dates or text that only grows")


def read_from(watermark: Watermark | None, lookback: float) -> Any:
    """The smallest cursor value the next batch reads: the watermark, less the lookback."""
    if watermark is None:
        return None
    value = watermark.value()
    if not lookback:
        return value
    if isinstance(value, (datetime, date)):
        return value - timedelta(seconds=lookback)
    if isinstance(value, int):
        return value - int(lookback)
    if isinstance(value, Decimal):
        return value - Decimal(str(lookback))
    if isinstance(value, float):
        return value - lookback
    raise PostgresSourceError("postgres.lookback needs a cursor of numbers or times; a text cursor takes none")


def qualified_name(name: str):
    """`schema.table` or `table` as a quoted SQL identifier (never formatted into the SQL as text)."""
    from psycopg import sql

    return sql.Identifier(*name.split("."))


def rows_query(settings, start: Any):
    """(the SQL, its parameters): every row as JSON text with its cursor value, from `start` on (all without)."""
    from psycopg import sql

    if settings.table is not None:
        relation = sql.SQL("select * from {}").format(qualified_name(settings.table))
    else:
        relation = sql.SQL(settings.query.strip().rstrip(";"))
    cursor = sql.Identifier(settings.cursor)
    query = sql.SQL("select row_to_json(r)::text, r.{cursor} from ({relation}) as r").format(
        cursor=cursor, relation=relation)
    if start is None:
        return query, {}
    # NULL cursors are read on every run (never lost; duplicates after their first load).
    return query + sql.SQL(" where r.{cursor} >= %(start)s or r.{cursor} is null").format(cursor=cursor), {
        "start": start}


def source_label(settings) -> str:
    """How the warehouse names where a row came from (quarantine.file): never the connection string."""
    return f"postgres:{settings.table}" if settings.table is not None else "postgres:query"


def dsn_secrets(dsn: str) -> list[str]:
    """What of a connection string is secret: its password (the user, host and database stay readable in
    errors); the whole string when it cannot be parsed."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:  # unparseable: nothing of it may show
        return [dsn]
    return [dsn, str(password), quote(str(password), safe="")] if password else [dsn]


def scrub_exactly(text: str, secrets: list[str]) -> str:
    """`text` with each secret (longest first) replaced by `…`, then every URL reduced to scheme and host.
    Unlike redact.scrub, a URL secret's user and path stay readable: a DSN's user and database name are what
    an error needs to be understood, and not secret."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "…")
    return redact_urls(text)


def scrub_dsn(text: str, dsn: str) -> str:
    """`text` without the connection string and without its password."""
    return scrub_exactly(text, dsn_secrets(dsn))


# Connection failures that will not pass on their own: refused credentials, a database or role that does not
# exist, no pg_hba.conf entry (libpq reports them on connect without an SQLSTATE).
PERMANENT_CONNECT_FAILURES = ("authentication failed", "does not exist", "no pg_hba.conf entry",
                              "permission denied")


def _error(exc: Exception, dsn: str) -> Exception:
    """A one-line error for what psycopg raised, scrubbed of the connection string and its password; a
    PostgresUnreachable (retried) for a connection that failed or broke, else a PostgresSourceError."""
    import psycopg
    from psycopg import errors

    message = scrub_dsn(" ".join(str(exc).split()), dsn)
    sqlstate = exc.sqlstate or ""
    transient = (isinstance(exc, psycopg.OperationalError) and not isinstance(exc, errors.QueryCanceled)
                 and (sqlstate == "" or sqlstate.startswith(("08", "57P")))
                 and not any(failure in message for failure in PERMANENT_CONNECT_FAILURES))
    kind = PostgresUnreachable if transient else PostgresSourceError
    return kind(f"postgres: {message}")


class PostgresReader:
    """One batch's read of a postgres source: records in RECORD_SCHEMA chunks, and the greatest cursor value."""

    def __init__(self, settings, *, chunk_records: int, max_record_bytes: int) -> None:
        self.settings = settings
        self.chunk_records = chunk_records
        self.max_record_bytes = max_record_bytes
        self.label = source_label(settings)
        self.greatest: Any = None  # the greatest cursor value read so far
        self.rows_read = 0

    @property
    def new_watermark(self) -> Watermark | None:
        return None if self.greatest is None else watermark_of(self.greatest)

    def read(self, watermark: Watermark | None, labels: list[Label]) -> Iterator[pa.Table]:
        import psycopg

        dsn = read_dsn(self.settings)
        start = read_from(watermark, self.settings.lookback)
        try:
            # The DSN is passed through as given (a URL or key=value pairs); connect_timeout bounds a dead host.
            with psycopg.connect(dsn, connect_timeout=self.settings.connect_timeout_seconds) as conn:
                conn.read_only = True
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                with conn.transaction():
                    timeout_ms = str(int(self.settings.statement_timeout_seconds * 1000))
                    conn.execute("select set_config('statement_timeout', %s, true)", [timeout_ms])
                    query, params = rows_query(self.settings, start)
                    with conn.cursor(name=PORTAL) as cursor:
                        cursor.execute(query, params)
                        while True:
                            rows = cursor.fetchmany(self.chunk_records)
                            if not rows:
                                break
                            yield self._table(rows)
        except psycopg.Error as exc:
            raise _error(exc, dsn) from None

    def _table(self, rows: list[tuple[str, Any]]) -> pa.Table:
        texts = pa.array([row[0] for row in rows], pa.string())
        values = [row[1] for row in rows if row[1] is not None]
        if values:
            greatest = max(values)
            if self.greatest is None or greatest > self.greatest:
                self.greatest = greatest
        count = len(texts)
        first_row = self.rows_read + 1
        self.rows_read += count
        sizes = pc.binary_length(texts)
        reasons: pa.Array = pa.nulls(count, pa.string())
        details: pa.Array = pa.nulls(count, pa.string())
        if pc.max(sizes).as_py() > self.max_record_bytes:  # rare: only then a list per row
            too_large = [size > self.max_record_bytes for size in sizes.to_pylist()]
            reasons = pa.array(["record_too_large" if large else None for large in too_large], pa.string())
            details = pa.array([f"{size} bytes; the limit is ingest.max_record_bytes={self.max_record_bytes}"
                                if large else None for size, large in zip(sizes.to_pylist(), too_large)],
                               pa.string())
        return pa.Table.from_arrays(
            [
                pa.array([self.label] * count, pa.string()),
                # line_no: the row's position in this batch's read (a row has no fixed place in a table; a bad
                # row read again is known by its text, as in a file read again whole: see ingest).
                pa.array(range(first_row, first_row + count), pa.int64()),
                pa.nulls(count, pa.int64()),
                texts,
                pa.nulls(count, pa.binary()),
                pa.nulls(count, pa.string()),
                pa.array([False] * count, pa.bool_()),
                reasons,
                details,
                pa.nulls(count, pa.int64()),
                pa.nulls(count, pa.int64()),
            ],
            schema=RECORD_SCHEMA,
        )
