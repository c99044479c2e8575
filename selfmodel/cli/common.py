"""What every command shares: its settings, known failures as one line and an exit code, the writer lock,
and a warehouse connection opened for writing."""

from __future__ import annotations

import sys
from contextlib import ExitStack, contextmanager
from typing import Iterator

import click
import duckdb

from selfmodel.cli.exit_codes import ExitCode
from selfmodel.settings import ConfigError, Settings
from selfmodel.terminal import printable
from warehouse.db import WarehouseBusyError, WarehouseError


def settings_of(ctx: click.Context) -> Settings:
    return ctx.obj["settings_loader"]()


@contextmanager
def clean_errors() -> Iterator[None]:
    """Known failures become one readable line on stderr and an exit code, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        echo_error(exc)
        sys.exit(ExitCode.USAGE)
    except WarehouseBusyError as exc:
        echo_error(exc)
        sys.exit(ExitCode.BUSY)
    except WarehouseError as exc:
        echo_error(exc)
        sys.exit(ExitCode.FAILED)
    except duckdb.OutOfMemoryException as exc:
        # DuckDB's message ends in generic advice about SET statements; what a user can change is the config.
        echo_error(f"the warehouse ran out of memory: {_first_line(exc)}. Raise warehouse.memory_limit, or set "
                   f"it if it is not set (above it DuckDB spills to disk, in <warehouse>.tmp); this step stopped "
                   f"and rolled back what it had not committed.")
        sys.exit(ExitCode.FAILED)
    except OSError as exc:  # the machine, not the data: a folder that cannot be made, a full disk
        echo_error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        sys.exit(ExitCode.FAILED)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__


@contextmanager
def snapshot_errors() -> Iterator[None]:
    """Snapshot problems are one line on stderr: no snapshot or a bad one (1), an unknown version (2)."""
    from selfmodel.publish import PublishError
    from warehouse.online import SnapshotError

    with clean_errors():
        try:
            yield
        except SnapshotError as exc:
            raise WarehouseError(str(exc)) from None
        except PublishError as exc:
            raise ConfigError(str(exc)) from None


def echo_error(error: object) -> None:
    # Messages quote file names, ids and values from the data: a control character in them is shown as its
    # escape, so it never acts on the terminal.
    click.echo(f"error: {printable(error, multiline=True)}", err=True)


@contextmanager
def sole_writer(settings: Settings, command: str) -> Iterator[None]:
    """Hold the warehouse's writer lock (selfmodel.lock) while a command writes, as the nightly run does.

    DuckDB's own file lock only covers the moments a connection is open; between the nightly run's steps
    a standalone command could otherwise slip in. Busy: exit 3 naming the holder.
    """
    from selfmodel.lock import writer_lock

    with writer_lock(settings.warehouse_path, what=f"selfmodel {command}"):
        yield


@contextmanager
def writing_warehouse(settings: Settings, command: str, *, lock: bool = True):
    """The writer lock, then the warehouse open for writing; when the command's work completes, the analyst
    copy shows it (selfmodel.analyst.open_for_writing). `lock` false is a dry run: no lock, and the analyst
    copy is left as it is (a dry run keeps nothing)."""
    from selfmodel.analyst import open_for_writing
    from warehouse.db import connect

    with ExitStack() as stack:
        if lock:
            stack.enter_context(sole_writer(settings, command))
            yield stack.enter_context(open_for_writing(settings))
        else:
            con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
            stack.callback(con.close)
            yield con


@contextmanager
def reading_warehouse(settings: Settings):
    """A read-only connection to the warehouse; closed after."""
    from warehouse.db import connect

    con = connect(settings.warehouse_path, read_only=True)
    try:
        yield con
    finally:
        con.close()


def quiet_interpreter_teardown() -> None:
    """Send stderr to /dev/null for the interpreter's very last moments, after every exit handler ran.

    When background threads (Prefect's, a server's) still hold DuckDB objects at exit, DuckDB's Python binding (nanobind)
    prints dozens of "leaked instance" lines while the interpreter tears its modules down: harmless (the
    process is ending; the database was closed and committed long before), but they bury the run's
    summary. atexit runs handlers last-registered first, and this one is registered before Prefect is
    imported, so Prefect's own exit handlers (flushing logs to its API) still report any problem.
    """
    import atexit
    import os

    def silence() -> None:
        sys.stderr.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)

    atexit.register(silence)
