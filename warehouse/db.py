"""Connections to the DuckDB warehouse, recorded migrations, and SQL loaded by name.

DuckDB lets one process hold a read-write connection and locks every other process out, readers
included. `connect` turns that lock error into `WarehouseBusyError`, whose message says who holds it,
so a second writer fails fast and clearly instead of with a driver traceback (or, asked to, waits a
while for the holder to close the file first).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Callable

import duckdb

MIGRATIONS_PACKAGE = "warehouse.migrations"
QUERIES_PACKAGE = "warehouse.queries"
BUSY_POLL_SECONDS = 0.25


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse file (or its writer lock: selfmodel.lock.WriterLockBusy).

    `holder` says who, as far as is known: {"pid": ..., "program": ...} from DuckDB's lock error.
    """

    def __init__(self, message: str, holder: dict | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class WarehouseError(RuntimeError):
    """The warehouse file cannot be opened or migrated."""


def connect(path: Path, *, read_only: bool = False, memory_limit: str | None = None,
            wait_seconds: float = 0.0) -> duckdb.DuckDBPyConnection:
    """Open the warehouse (creating its folder), in UTC, migrated to the latest schema when writable.

    While another process has the file open, wait up to `wait_seconds` for it to close it, then raise
    WarehouseBusyError naming that process.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise WarehouseError(f"warehouse {path} does not exist yet: run `selfmodel ingest` first")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WarehouseError(f"cannot create the warehouse folder {path.parent}: {exc.strerror or exc}") from None
    con = _open(path, read_only, wait_seconds)
    execute(con, "set TimeZone = 'UTC'")
    if memory_limit:
        execute(con, f"set memory_limit = '{_validated_size(memory_limit)}'")
    if not read_only:
        migrate(con)
    return con


def wait_until_free(path: Path, wait_seconds: float) -> None:
    """Wait up to `wait_seconds` until no other process has the warehouse file open; WarehouseBusyError if
    one still does. A file not made yet is free; any other problem is left to the connection that follows."""
    path = Path(path)
    if not path.exists():
        return
    try:
        _open(path, False, wait_seconds).close()
    except WarehouseError:
        pass


def _open(path: Path, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    started = time.monotonic()
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            holder = _lock_holder(str(exc))
            if holder is None:
                raise WarehouseError(f"cannot open warehouse {path}: {exc}") from None
            waited = time.monotonic() - started
            if waited >= wait_seconds:
                raise _busy(path, holder, waited) from None
            time.sleep(min(BUSY_POLL_SECONDS, wait_seconds - waited))
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open warehouse {path}: {exc}") from None


def _lock_holder(message: str) -> dict | None:
    """Who holds the file, from DuckDB's lock error ("... lock is held in /usr/bin/python3 (PID 42)");
    None when the error is not about the lock."""
    if "lock" not in message.lower():
        return None
    pid = re.search(r"PID (\d+)", message)
    program = re.search(r"held in (.+?) \(PID", message)
    if not pid:
        return {}
    return {"pid": int(pid.group(1)), "program": Path(program.group(1)).name if program else None}


def _busy(path: Path, holder: dict, waited: float) -> WarehouseBusyError:
    who = f"process {holder['pid']}" if holder.get("pid") else "another process"
    if holder.get("program"):
        who += f" ({holder['program']})"
    waited_text = f" after waiting {waited:.0f} s" if waited >= 1 else ""
    return WarehouseBusyError(
        f"warehouse {path} is in use by {who}{waited_text}; only one writer may run at a time. "
        "Wait for it to finish (or stop it) and run again.", holder)


def quote_identifier(name: str) -> str:
    """`name` as an identifier in SQL text: in double quotes, each `"` doubled.

    Only for names a statement cannot take as a bound parameter (the database in `COPY FROM DATABASE`,
    `USE`, `DETACH`); a database is named after its file, so the name is whatever the file is called.
    """
    return '"' + name.replace('"', '""') + '"'


def re2_literal(text: str) -> str:
    """`text` as an RE2 pattern (DuckDB's regexp functions) that matches exactly it: every character but an
    ASCII letter or digit written as `\\x{...}`, so nothing in it can act as regex syntax."""
    return "".join(char if char.isascii() and char.isalnum() else f"\\x{{{ord(char):x}}}" for char in text)


def copy_database(con: duckdb.DuckDBPyConnection, target: Path, alias: str,
                  then: Callable[[str, str], None] | None = None) -> None:
    """Copy the database `con` has open into the new file `target` (`COPY FROM DATABASE`: the live rows of
    every table, with views and macros), attached as `alias` meanwhile; `then(source, copy)`, given the two
    quoted identifiers, may add to the copy before it is detached (which checkpoints it: complete, no WAL)."""
    [(name,)] = execute(con, "select current_database()")  # the warehouse file's name: any characters
    source = quote_identifier(name)
    # A warehouse file called <alias>.duckdb is itself the database <alias>.
    copy = quote_identifier(alias if name != alias else f"{alias}_2")
    execute(con, f"attach ? as {copy}", [str(target)])
    try:
        execute(con, f"copy from database {source} to {copy}")
        if then is not None:
            then(source, copy)
    finally:
        execute(con, f"detach {copy}")


def replace_synced(temporary: Path, target: Path) -> None:
    """fsync `temporary`, rename it over `target`, fsync the folder: readers see the old file or the new one."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    descriptor = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def compact(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Rewrite the warehouse at `path`, which `con` holds open read-write, into a fresh file, and close `con`.

    DuckDB leaves deleted rows' bytes in the file's free blocks until they happen to be reused (a deleted
    text can still be read off the disk), so after a deletion that must be real (`selfmodel forget`) the
    database is copied (only live rows) into a temporary file beside it and renamed over the original. `con`
    is closed first: its WAL, named after the path, must not be replayed onto the new file.
    """
    path = Path(path).resolve()  # a symlinked warehouse: rewrite the file it points to, and keep the link
    temporary = path.parent / f".{path.name}.compact-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    try:
        copy_database(con, temporary, "compacted")
    except BaseException:
        temporary.unlink(missing_ok=True)  # a full disk: no half copy left beside the warehouse
        raise
    con.close()
    replace_synced(temporary, path)


def _validated_size(size: str) -> str:
    # SET does not take bound parameters; accept only a plain size so nothing else can be injected.
    size_in_bytes(size)
    return size.strip()


# DuckDB's units: KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024.
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def size_in_bytes(size: str) -> int:
    """A warehouse.memory_limit ('1GB', '512MiB') in bytes, as DuckDB reads it."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)\s*", size, flags=re.IGNORECASE)
    if not found or found.group(2).lower() not in _SIZE_UNITS:
        raise WarehouseError(f"warehouse.memory_limit {size!r} is not a size like '4GB'")
    return int(float(found.group(1)) * _SIZE_UNITS[found.group(2).lower()])


@contextmanager
def memory_limit_while(con: duckdb.DuckDBPyConnection, configured: str | None, share: Callable[[int], int]):
    """Within the block, DuckDB's memory_limit is `share(configured bytes)`; the configured limit after it.
    Nothing changes when no limit is configured (DuckDB's default is a share of the machine's memory)."""
    if not configured:
        yield
        return
    set_global(con, f"set memory_limit = '{int(share(size_in_bytes(configured)))}B'")  # an int: nothing to inject
    try:
        yield
    finally:
        set_global(con, f"set memory_limit = '{_validated_size(configured)}'")


@contextmanager
def joins_as_written(con: duckdb.DuckDBPyConnection):
    """Within the block DuckDB builds each hash join on the side the query puts second, as written, instead
    of the side its estimates call smaller.

    For queries whose second side is never the larger one (the fold: families, kinds, base rates, one total per
    key). DuckDB estimates a CTE it materialises at a fraction of its rows, so it built the fold's join of 8 M
    (user, key, value) rows with 2 M key totals on the 8 M wide rows: 4.3 s of an 8 s fold at 5 M events, 6 s
    without it (benchmarks/refresh.py). Other settings of disabled_optimizers are kept and put back after."""
    [(before,)] = execute(con, "select current_setting('disabled_optimizers')")
    if not re.fullmatch(r"[a-z_, ]*", before):  # names DuckDB listed; never quoted into SET otherwise
        raise WarehouseError(f"unexpected disabled_optimizers setting {before!r}")
    wanted = ", ".join(dict.fromkeys(name for name in [*(n.strip() for n in before.split(",")),
                                                       "build_side_probe_side"] if name))
    set_global(con, f"set disabled_optimizers = '{wanted}'")
    try:
        yield
    finally:
        set_global(con, f"set disabled_optimizers = '{before}'")


def set_global(con: duckdb.DuckDBPyConnection, statement: str) -> None:
    """A SET of a database-wide setting, through a cursor of its own. The error that ends a block may have
    aborted the caller's transaction, and DuckDB then refuses every statement on that connection until its
    rollback: a SET there would raise in place of that error and leave the setting changed (SET is not undone
    by a rollback). A cursor has its own transaction, and the setting is the whole database's."""
    cursor = con.cursor()
    try:
        execute(cursor, statement)
    finally:
        cursor.close()


@cache
def load_sql(name: str) -> str:
    """The text of warehouse/queries/<name>.sql, with each `{{other}}` line replaced by the text of
    warehouse/queries/other.sql: one home for a fragment several queries share (the belief formula's
    effective weights), composed from files only, never from values."""
    text = resources.files(QUERIES_PACKAGE).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return re.sub(r"^\s*\{\{([a-z_]+)\}\}\s*$", lambda m: load_sql(m.group(1)).strip(), text, flags=re.M)


def _migration_files() -> list[tuple[str, str]]:
    folder = resources.files(MIGRATIONS_PACKAGE)
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return the names applied.

    A migration already recorded is skipped; one whose file changed after it was applied is an error,
    because the schema it describes is no longer the schema in the warehouse.
    """
    execute(
        con,
        """
        create table if not exists schema_migrations (
            version    varchar primary key,
            checksum   varchar not null,
            applied_at timestamptz not null default now()
        )
        """
    )
    applied = dict(con.execute("select version, checksum from schema_migrations").fetchall())
    newly_applied = []
    for name, sql in _migration_files():
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        if name in applied:
            if applied[name] != checksum:
                raise WarehouseError(
                    f"migration {name} changed after it was applied; add a new migration instead"
                )
            continue
        execute(con, "begin transaction")
        try:
            execute(con, sql)
            execute(con, "insert into schema_migrations (version, checksum) values (?, ?)", [name, checksum])
            execute(con, "commit")
        except Exception:
            execute(con, "rollback")
            raise
        newly_applied.append(name)
    return newly_applied


def run(con: duckdb.DuckDBPyConnection, name: str, params: dict | None = None) -> list[tuple]:
    """Run warehouse/queries/<name>.sql with bound parameters and fetch every row.

    DuckDB 2 refuses further work on a connection while a result is unfetched, so every statement,
    inserts included, is fetched to the end here.
    """
    return con.execute(load_sql(name), params or {}).fetchall()


def execute(con: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> list[tuple]:
    """Run an ad-hoc statement (DDL, transaction control) and fetch its result to the end."""
    return con.execute(sql, params or []).fetchall() if params else con.execute(sql).fetchall()


def run_dicts(con: duckdb.DuckDBPyConnection, name: str, params: dict | None = None) -> list[dict]:
    """Like `run`, with each row as a dict keyed by column name."""
    cursor = con.execute(load_sql(name), params or {})
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def run_script(con: duckdb.DuckDBPyConnection, name: str, params: dict | None = None) -> None:
    """Run a file of several statements, each with the parameters it names.

    DuckDB binds parameters only in a single statement, so the file is split at the semicolons that
    end a line (our SQL files never put one elsewhere).
    """
    statements = [s.strip() for s in re.split(r";\s*\n", load_sql(name) + "\n") if s.strip()]
    for statement in statements:
        code = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
        if not code.strip():
            continue
        wanted = {key: value for key, value in (params or {}).items() if f"${key}" in code}
        con.execute(code, wanted).fetchall()


def query_arrow_over_chunk(con: duckdb.DuckDBPyConnection, sql: str, params: dict, chunk) -> "pa.Table":
    """Run `sql`, which reads the Arrow table `chunk`, and fetch the result as Arrow.

    DuckDB finds `chunk` as a local of this frame (a replacement scan) instead of through
    con.register: a registered view, like a temp table, is kept until the transaction ends, so in a
    long batch every chunk would stay in memory.
    """
    return con.sql(sql, params=params).to_arrow_table()


def run_over_classified(con: duckdb.DuckDBPyConnection, name: str, params: dict | None, classified) -> list[tuple]:
    """Like `run`, for a query reading the Arrow table `classified` (found by replacement scan, see above)."""
    return con.execute(load_sql(name), params or {}).fetchall()
