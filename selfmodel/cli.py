"""The `selfmodel` command line. Commands call the domain code directly (no Prefect server is started);
the flows in flows/ wrap the same code for deployments and the nightly run."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from contextlib import ExitStack, contextmanager
from typing import Iterator

import click

from selfmodel.settings import ConfigError, Settings, load_settings
from selfmodel.terminal import PrintableFormatter, printable
from warehouse.db import WarehouseBusyError, WarehouseError

EXIT_BATCH_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 3


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings_loader"]()


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Known failures become one readable line on stderr and an exit code, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        _echo_error(exc)
        sys.exit(EXIT_USAGE)
    except WarehouseBusyError as exc:
        _echo_error(exc)
        sys.exit(EXIT_BUSY)
    except WarehouseError as exc:
        _echo_error(exc)
        sys.exit(EXIT_BATCH_FAILED)
    except OSError as exc:  # the machine, not the data: a folder that cannot be made, a full disk
        _echo_error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        sys.exit(EXIT_BATCH_FAILED)


def _echo_error(error: object) -> None:
    # Messages quote file names, ids and values from the data: a control character in them is shown as its
    # escape, so it never acts on the terminal.
    click.echo(f"error: {printable(error, multiline=True)}", err=True)


class Timestamp(click.ParamType):
    """ISO-8601 time; without a zone it is UTC."""

    name = "timestamp"

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time such as 2018-09-01 or 2018-09-01T12:00:00Z", param, ctx)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
        try:
            parsed.astimezone(timezone.utc)  # the warehouse works in UTC: 0001-01-01T00:00+01:00 has no UTC time
        except OverflowError:
            self.fail(f"{value!r} is out of range: it has no UTC time between years 1 and 9999", param, ctx)
        return parsed


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses nan, which every comparison with a bound lets through."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


# Bounds of numeric options: generous for any real use, far below what DuckDB (BIGINT) or timedelta hold.
MAX_EXAMPLE_RECORDS = 1_000_000
MAX_BELIEFS_USED = 10_000


def _confidence(value: float) -> str:
    """Three decimals, rounded down: confidence is below 1, and 0.99999 shown as 1.000 would read as certainty."""
    return f"{math.floor(value * 1000) / 1000:.3f}"
MAX_DAYS_BETWEEN_NIGHTS = 366


@contextmanager
def _sole_writer(settings: Settings, command: str) -> Iterator[None]:
    """Hold the warehouse's writer lock (selfmodel.lock) while a command writes, as the nightly run does.

    DuckDB's own file lock only covers the moments a connection is open; between the nightly run's steps
    a standalone command could otherwise slip in. Busy: exit 3 naming the holder.
    """
    from selfmodel.lock import writer_lock

    with writer_lock(settings.warehouse_path, what=f"selfmodel {command}"):
        yield


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default: $SELFMODEL_CONFIG, else ./selfmodel.yaml).")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Build per-user self-models from interaction logs: ingest, inspect, and (soon) serve beliefs."""
    cache: dict[str, Settings] = {}

    def loader() -> Settings:
        if "settings" not in cache:
            cache["settings"] = load_settings(config_path)
        return cache["settings"]

    ctx.obj = {"settings_loader": loader}
    _printable_last_resort_logs()


def _printable_last_resort_logs() -> None:
    """With no logging configured, Python prints WARNING records raw on stderr (logging.lastResort): the
    same, through printable, so a warning quoting a file name cannot act on the terminal."""
    import logging

    if logging.lastResort is not None:  # it writes to whatever sys.stderr is at the time
        logging.lastResort.setFormatter(PrintableFormatter())


@main.command()
@click.option("--source", "source_name", default=None, help="Ingest only this source (by name).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--prefect", "via_prefect", is_flag=True,
              help="Run as a Prefect flow run (starts a temporary server unless PREFECT_API_URL is set).")
@click.pass_context
def ingest(ctx: click.Context, source_name: str | None, as_json: bool, via_prefect: bool) -> None:
    """Load new interaction records into the warehouse; bad ones are quarantined with a reason.

    Exits 0 even when records were quarantined; 1 when a batch could not run at all, 2 on a bad
    config, 3 when another process holds the warehouse.
    """
    from selfmodel.ingest import ingest as run_ingest  # keeps `selfmodel --help` instant

    with _clean_errors():
        settings = _settings(ctx)
        if source_name:
            settings.source(source_name)  # unknown name: a clear error before anything opens
        if not settings.sources:
            raise ConfigError("the config declares no sources")
        with _sole_writer(settings, "ingest"):
            if via_prefect:
                reports = _ingest_via_prefect(ctx, source_name)
            else:
                with _progress(enabled=not as_json and sys.stderr.isatty()) as progress:
                    reports = run_ingest(settings, source_name, progress=progress)
    if as_json:
        click.echo(json.dumps({"batches": [report.to_json() for report in reports]}, default=str))
    else:
        _print_batches(reports, settings)
    if any(report.status != "committed" for report in reports):
        sys.exit(EXIT_BATCH_FAILED)


def _ingest_via_prefect(ctx: click.Context, source_name: str | None) -> list:
    _offline_quiet_prefect()  # as `selfmodel nightly` runs Prefect (before it is imported): no telemetry, ...
    from flows.ingest import ingest as ingest_flow
    from selfmodel.ingest import BatchReport

    config_path = ctx.parent.params.get("config_path") if ctx.parent else None
    state = ingest_flow(config_path=config_path, source=source_name, return_state=True)
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        if isinstance(error, (WarehouseBusyError, ConfigError)):  # exit 3 or 2, as without --prefect
            raise error
        raise WarehouseError(f"the ingest flow run ended {state.name}: {state.message}")
    return [BatchReport(**report) for report in state.result()]


@contextmanager
def _progress(enabled: bool):
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  transient=True, console=_stderr_console()) as bar:

        def update(source: str, done: int, total: int) -> None:
            if source not in tasks:
                tasks[source] = bar.add_task(source, total=total or 1)
            bar.update(tasks[source], completed=done, total=total or 1)

        yield update


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _console():
    """stdout console; wide enough for the count tables and belief lines when output is piped or logged."""
    from rich.console import Console

    # emoji=False: a ":warning:" in someone's text is printed as written, not as an emoji.
    return Console(emoji=False) if sys.stdout.isatty() else Console(width=140, emoji=False)


def _observations(count: int) -> str:
    return f"{count} observation" if count == 1 else f"{count} observations"


def _print_batches(reports, settings: Settings) -> None:
    from rich.table import Table

    table = Table(title="ingest")
    for column in ("source", "status", "rows read", "loaded", "duplicates", "quarantined", "late", "labels", "events",
                   "files"):
        table.add_column(column, justify="left" if column in ("source", "status", "files") else "right")
    for report in reports:
        actions: dict[str, int] = {}
        for entry in report.files:
            actions[entry["action"]] = actions.get(entry["action"], 0) + 1
        table.add_row(report.source, report.status, f"{report.rows_read:,}", f"{report.loaded:,}",
                      f"{report.duplicates:,}", f"{report.quarantined:,}", f"{report.late_events:,}",
                      f"{report.labels_loaded:,}", f"{report.events_loaded:,}",
                      ", ".join(f"{n} {a}" for a, n in sorted(actions.items())))
    console = _console()
    console.print(table)
    for report in reports:
        if report.error:
            console.print(f"{report.source}: batch failed: {printable(report.error)}", style="red", markup=False)
    console.print(f"warehouse: {printable(settings.warehouse_path)}", markup=False)
    if any(report.quarantined for report in reports):
        console.print("see why records were quarantined: selfmodel quarantine")
    for report in reports:  # a file whose records were (nearly) all quarantined for a cause ingest recognised
        for entry in report.files:
            if entry.get("hint"):
                console.print(f"hint: {report.source}: {printable(entry['path'])}: {printable(entry['hint'])}",
                              style="yellow",
                              markup=False, soft_wrap=True)  # one line, so a suggested command copies whole


@main.command()
@click.option("--source", "source_name", default=None, help="Only this source.")
@click.option("--reason", default=None, help="Only this reason (e.g. malformed_json).")
@click.option("--limit", type=click.IntRange(0, MAX_EXAMPLE_RECORDS), default=20, show_default=True,
              help="How many example records to show (0: only the counts).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def quarantine(ctx: click.Context, source_name: str | None, reason: str | None, limit: int, as_json: bool) -> None:
    """Show what was quarantined and why: counts per source and reason, then example records."""
    from selfmodel.quarantine import quarantine_summary

    with _clean_errors():
        settings = _settings(ctx)
        if source_name:
            settings.source(source_name)  # unknown name: the same clear error as ingest gives
        summary = quarantine_summary(settings.warehouse_path, source_name, reason, limit)
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    from rich.table import Table
    from rich.text import Text

    console = _console()
    counts = Table(title="quarantine by reason")
    for column in ("source", "reason", "records"):
        counts.add_column(column, justify="right" if column == "records" else "left")
    for row in summary["counts"]:
        counts.add_row(Text(printable(row["source"])), Text(printable(row["reason"])), f"{row['records']:,}")
    console.print(counts)
    if not summary["counts"]:
        console.print("nothing quarantined" + (" for that filter" if source_name or reason else ""))
    for record in summary["records"]:
        where = f"{record['file']}:{record['line_no']}" if record["line_no"] is not None else record["file"]
        console.print(Text.assemble((printable(record["reason"]), "bold"),
                                    f" {printable(where)}  {printable(record['detail'] or '')}"), highlight=False)
        console.print("    " + (printable(record["raw_preview"]) if record["raw_preview"] else "<empty>"),
                      markup=False, highlight=False)


EXIT_BAR_FAILED = 6


@main.command(name="eval")
@click.option("--suite", "suites", multiple=True,
              help="Run only this suite (repeatable; default: all but enrichment, unless eval.enrichment.enabled).")
@click.option("--as-of", "as_of", type=Timestamp(), default=None,
              help="Evaluate a past night: the predictive suites see only events up to this time.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def eval_command(ctx: click.Context, suites: tuple[str, ...], as_of: datetime | None, as_json: bool) -> None:
    """Run the eval suites against the success bar (expectations/bar.yaml) and the last passing run.

    Exits 0 when every suite that ran passed, 6 when one failed its bar or regressed.
    """
    from selfmodel.evals.run import run_evals
    from warehouse.db import connect

    with _clean_errors(), ExitStack() as stack:
        settings = _settings(ctx)
        stack.enter_context(_sole_writer(settings, "eval"))
        con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
        try:
            try:
                runs = run_evals(con, settings, list(suites) or None, notify=_alert_hook(settings), as_of=as_of)
            except (ValueError, FileNotFoundError) as exc:
                raise ConfigError(str(exc)) from None
        finally:
            con.close()
    if as_json:
        click.echo(json.dumps({"runs": [r.to_json() for r in runs]}, default=_json_default))
    else:
        _print_eval_runs(runs)
    if any(not r.passed for r in runs if not r.skipped):
        sys.exit(EXIT_BAR_FAILED)


def _alert_hook(settings: Settings):
    """Alerts go out only when owners are configured; the hook records and delivers them."""
    from selfmodel.evals.notify import owner_alert_hook

    return owner_alert_hook(settings)


def _print_eval_runs(runs) -> None:
    console = _console()
    for suite_run in runs:
        suite = printable(suite_run.suite)  # a case file names its suite
        if suite_run.skipped:
            console.print(f"{suite}: skipped ({printable(suite_run.skipped)})", markup=False)
            continue
        verdict = "PASSED" if suite_run.passed else "FAILED"
        if suite_run.bar and all(check.get("status") == "too_small" for check in suite_run.bar.values()):
            verdict += " (too small to judge)"
        console.print(f"{suite}: {verdict}", markup=False)
        for metric, check in suite_run.bar.items():
            value = "n/a" if check["value"] is None else f"{check['value']:.3f}"
            mark = "ok  " if check["passed"] else ("n/a " if check["passed"] is None else "FAIL")
            small = f", too small to judge: {check.get('judged')} judged" if check.get("status") == "too_small" else ""
            console.print(f"  {mark} {printable(metric):<36} {value:>8}  (bar {check['op']} {check['threshold']}{small})",
                          markup=False)
        shown = {k: v for k, v in suite_run.metrics.items() if k not in suite_run.bar and isinstance(v, (int, float))}
        if suite_run.suite == "enrichment":
            from selfmodel.evals.enrichment import summary_lines

            for line in summary_lines(suite_run.metrics, suite_run.details):
                console.print("  " + printable(line), markup=False)
        elif shown:
            console.print("       " + ", ".join(f"{printable(k)}={v:.3g}" if isinstance(v, float)
                                               else f"{printable(k)}={v}" for k, v in shown.items()), markup=False)
        if suite_run.details.get("per_key"):
            from selfmodel.evals.report import per_key_table_lines

            for line in per_key_table_lines(suite_run.details["per_key"], suite_run.bar):
                console.print("  " + printable(line), markup=False)
        for regression in suite_run.regressions:
            console.print(f"  REGRESSION {printable(regression['metric'])}: {regression['before']:.3f} -> "
                          f"{regression['after']:.3f}", markup=False)
        for alert in suite_run.alerts:
            console.print(f"  alert: {printable(alert)}", markup=False)


@main.command()
@click.option("--as-of", "as_of", type=Timestamp(), default=None,
              help="Calibrate as of a past time: only events up to it are seen (as eval --as-of).")
@click.option("--dry-run", is_flag=True, help="Fit and print the table of parameters; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def calibrate(ctx: click.Context, as_of: datetime | None, dry_run: bool, as_json: bool) -> None:
    """Fit the belief model per key family to this warehouse's history (README "Calibration").

    Half-life, prior, evidence weights, repeat discount, base rates and a calibration map are fitted on
    windows before the evaluation's and adopted per family only when validation log loss improves. The
    next refresh re-folds every belief with them. Exits 0 (also when nothing improved).
    """
    from selfmodel.calibrate import calibrate as run_calibrate
    from warehouse.db import connect

    with _clean_errors(), ExitStack() as stack:
        settings = _settings(ctx)
        if not dry_run:
            stack.enter_context(_sole_writer(settings, "calibrate"))
        con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
        try:
            try:
                result = run_calibrate(con, settings, as_of=as_of, dry_run=dry_run)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        finally:
            con.close()
    if as_json:
        click.echo(json.dumps(result.to_json(), default=_json_default))
    else:
        _print_calibration(result)


def _print_calibration(result) -> None:
    from selfmodel.calibrate import calibration_table

    console = _console()
    if result.reason:
        console.print(f"nothing fitted: {printable(result.reason)}", markup=False)
        return
    console.print(f"calibration on data up to {result.data_end:%Y-%m-%d}; the evaluation's windows start "
                  f"{result.evaluation_from:%Y-%m-%d} and were not read", markup=False, highlight=False)
    for line in calibration_table(result):
        console.print(printable(line), markup=False, highlight=False)
    if result.dry_run:
        console.print("dry run: nothing written", markup=False)
    elif result.adopted:
        console.print(f"adopted as {printable(result.calibration_id)}; the next refresh re-folds every belief with it",
                      markup=False, highlight=False)
    else:
        console.print(f"recorded as {printable(result.calibration_id)}; not adopted (no family's validation log "
                      "loss improved)", markup=False, highlight=False)


@main.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the HTML (default: next to the warehouse, report.html).")
@click.pass_context
def report(ctx: click.Context, out_path: str | None) -> None:
    """Write the HTML eval report: reliability diagram, learning curve and metric trends."""
    from selfmodel.clock import SystemClock
    from selfmodel.evals.report import write_report
    from warehouse.db import connect

    with _clean_errors():
        settings = _settings(ctx)
        target = Path(out_path) if out_path else settings.warehouse_path.parent / "report.html"
        try:
            con = connect(settings.warehouse_path, read_only=True)
        except WarehouseBusyError:
            copy = settings.analyst_copy_path
            if copy is None or not copy.exists():
                raise
            # A flow is writing: the analyst copy holds every eval run up to its last step.
            click.echo(f"the warehouse is being written; reporting from the analyst copy {printable(copy)}", err=True)
            con = connect(copy, read_only=True)
        try:
            written = write_report(con, target, SystemClock().now())
        finally:
            con.close()
    click.echo(f"report: {printable(written)}")


EXIT_BLOCKED = 4  # a block-severity data-quality expectation fails


@main.command()
@click.option("--suite", "suites", multiple=True,
              help="Validate only this suite (repeatable; default: every expectations/*.json).")
@click.option("--batch", "batch_ids", multiple=True,
              help="Re-validate this ingest batch with the per-batch suites, even if validated before (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def expectations(ctx: click.Context, suites: tuple[str, ...], batch_ids: tuple[str, ...], as_json: bool) -> None:
    """Check the warehouse against the data-quality suites (Great Expectations) and store the results.

    Per-batch suites check ingest batches not checked yet; the others check their table whole. Exits 0
    when nothing blocks (failed warnings included), 4 when a block-severity expectation fails in the latest
    validation of any asset (this run's or an earlier one still unresolved), 2 on a bad config or suite.
    """
    from selfmodel.quality import QualityError, blocking_failures, data_docs_folder, validate
    from warehouse.db import connect

    with _clean_errors(), ExitStack() as stack:
        settings = _settings(ctx)
        stack.enter_context(_sole_writer(settings, "expectations"))
        con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
        try:
            try:
                reports = validate(con, settings, list(suites) or None, list(batch_ids) or None)
            except QualityError as exc:
                raise ConfigError(str(exc)) from None
            blocking = blocking_failures(con, list(suites) or None)
        finally:
            con.close()
    index = data_docs_folder(settings) / "index.html"
    if as_json:
        click.echo(json.dumps({"validations": [r.to_json() for r in reports], "blocking": blocking,
                               "data_docs": str(index)}, default=_json_default))
    else:
        _print_validations(reports, blocking, index)
    if blocking:
        sys.exit(EXIT_BLOCKED)


def _print_validations(reports, blocking: list[dict], index) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="expectations")
    for column in ("suite", "asset", "rows", "result", "failed expectations"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for report in reports:
        result = "passed" if report.success else f"{report.blocking_failures} block, {report.warnings} warn"
        failed = "\n".join(f"{o.severity}: {o.expectation}"
                           + (f" ({o.unexpected_count} unexpected)" if o.unexpected_count else "")
                           for o in report.failures())
        table.add_row(escape(printable(report.suite)), escape(printable(report.asset)), f"{report.rows:,}", result,
                      escape(printable(failed, multiline=True)))
    console = _console()
    if reports:
        console.print(table)
    else:
        console.print("nothing new to validate")
    for failure in blocking:
        console.print(f"[red]BLOCKING[/red] {escape(printable(failure['suite']))} on "
                      f"{escape(printable(failure['asset']))}: "
                      f"{escape(printable(failure['expectation']))}"
                      f" ({failure['unexpected_count'] if failure['unexpected_count'] is not None else 'crashed'})"
                      f"  {escape(printable(failure['data_docs'] or ''))}", highlight=False)
    console.print(f"data docs: {printable(index)}", markup=False, highlight=False)


EXIT_AUDIT_FAILED = 5  # a snapshot failed its audit; the current one stays in service


@contextmanager
def _snapshot_errors() -> Iterator[None]:
    """Snapshot problems are one line on stderr: no snapshot or a bad one (1), an unknown version (2)."""
    from selfmodel.publish import PublishError
    from warehouse.online import SnapshotError

    with _clean_errors():
        try:
            yield
        except SnapshotError as exc:
            raise WarehouseError(str(exc)) from None
        except PublishError as exc:
            raise ConfigError(str(exc)) from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def publish(ctx: click.Context, as_json: bool) -> None:
    """Write a snapshot of the current beliefs, audit it, and publish it only if the audit passes.

    The audit: no blocking expectation failure, every eval suite's latest run passed (after the last
    refresh), and the snapshot's own counts and checksums. Exits 0 when published, 5 when the audit failed
    (the current snapshot stays in service, the nightly owners are alerted; `selfmodel snapshots` shows why).
    """
    from selfmodel.nightly import refused_snapshot_hook
    from selfmodel.publish import publish as run_publish

    with _snapshot_errors():
        settings = _settings(ctx)
        with _sole_writer(settings, "publish"):
            result = run_publish(settings, on_audit_failure=refused_snapshot_hook(settings, "selfmodel publish"))
    if result.alert_error:  # recorded as undelivered; the refusal itself stands
        click.echo(f"warning: the nightly owners could not be told: {printable(result.alert_error)}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        console = _console()
        if result.published:
            console.print(f"published {result.version}: {result.rows:,} beliefs of {result.users:,} users, "
                          f"data as of {result.data_as_of.isoformat()}", markup=False, highlight=False)
        else:
            console.print(f"NOT published: the audit of {result.version} failed; "
                          f"{printable(result.current or 'no snapshot')} stays current", markup=False, highlight=False)
        for check in result.audit.checks:
            console.print(f"  {'ok  ' if check.passed else 'FAIL'} {check.name:<17} {printable(check.detail)}",
                          markup=False, highlight=False)
    if not result.published:
        sys.exit(EXIT_AUDIT_FAILED)


def _belief_store(settings: Settings):
    from warehouse.online import BeliefStore

    return BeliefStore.open(settings.snapshots_path, watch=False)


@main.command()
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def lookup(ctx: click.Context, user_id: str, as_json: bool) -> None:
    """Show USER_ID's self-model in the published snapshot (what the online service sees)."""
    with _snapshot_errors():
        store = _belief_store(_settings(ctx))
        model = store.get(user_id)
        threshold = store.manifest["serving_threshold"]
    if as_json:
        # json.dumps, not pydantic's model_dump_json: it writes U+202E and C1 controls raw (see _json_text).
        click.echo(_json_text(model.model_dump(mode="json")))
        return
    console = _console()
    console.print(f"user {printable(user_id)} in snapshot {printable(model.snapshot_version)} "
                  f"(data as of {model.as_of.isoformat()}, serving threshold {threshold})",
                  markup=False, highlight=False)
    if model.cold_start:
        console.print("  cold start: the snapshot holds nothing about this user", markup=False)
    keys = [printable(belief.key) for belief in model.beliefs]
    key_width = min(40, max([28, *map(len, keys)]))
    for key, belief in zip(keys, model.beliefs):
        mark = "*" if belief.confidence >= threshold else " "
        shown = _confidence(belief.confidence)
        console.print(f" {mark} {key:<{key_width}} {printable(belief.value)[:40]:<40} {shown}  "
                      f"({_observations(belief.evidence_count)}, last {belief.last_evidence_at:%Y-%m-%d})",
                      markup=False, highlight=False)


@main.command()
@click.argument("user_id")
@click.argument("query")
@click.option("--min-confidence", type=FiniteFloatRange(0, 1), default=None,
              help="Use beliefs at or above this confidence (default: the snapshot's serving threshold).")
@click.option("--max-beliefs", type=click.IntRange(1, MAX_BELIEFS_USED), default=12, show_default=True,
              help="Use at most this many beliefs, the most confident first.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def enrich(ctx: click.Context, user_id: str, query: str, min_confidence: float | None, max_beliefs: int,
           as_json: bool) -> None:
    """Enrich QUERY with what the published snapshot says about USER_ID, as the online service would."""
    with _snapshot_errors():
        store = _belief_store(_settings(ctx))
        try:
            enrichment = store.enrich(query, user_id, min_confidence=min_confidence, max_beliefs=max_beliefs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(_json_text(enrichment.model_dump(mode="json", include={
            "user_id", "enriched_query", "beliefs_used", "snapshot_version", "min_confidence"})))
        return
    click.echo(printable(enrichment.enriched_query, multiline=True))  # the user's query is theirs to write
    click.echo(f"\n({len(enrichment.beliefs_used)} beliefs at or above {enrichment.min_confidence} used, "
               f"snapshot {printable(enrichment.snapshot_version)})", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; the API has no authentication).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.pass_context
def api(ctx: click.Context, host: str, port: int) -> None:
    """Serve the published snapshot over HTTP until interrupted: GET /users/ID/beliefs, POST /enrich, GET /healthz.

    Follows CURRENT as `BeliefStore` does; started before anything is published, it answers 503 until a
    snapshot appears. Reference: selfmodel/api.py and the README.
    """
    from selfmodel.api import serve

    _quiet_interpreter_teardown()  # no DuckDB "leaked instance" lines after a stop (see there)
    with _clean_errors():  # a port in use or an unknown host: one line, exit 1
        serve(_settings(ctx), host, port)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def snapshots(ctx: click.Context, as_json: bool) -> None:
    """List the published snapshots (newest first) with their audits, and the recent failed audits."""
    from selfmodel.publish import list_snapshots

    with _snapshot_errors():
        listing = list_snapshots(_settings(ctx))
    if as_json:
        click.echo(json.dumps(listing, default=_json_default))
        return
    from rich.table import Table
    from rich.text import Text

    console = _console()
    table = Table(title=Text(f"snapshots in {printable(listing['path'])}"))
    for column in ("", "version", "created", "data as of", "users", "beliefs", "audit", "eval"):
        table.add_column(column, justify="right" if column in ("users", "beliefs") else "left",
                         no_wrap=column in ("version", "created", "data as of"))
    for snap in listing["snapshots"]:
        # A snapshot folder's name and its manifest are files anyone with write access could have made.
        if "error" in snap:
            table.add_row("", Text(printable(snap["version"])), "", "", "", "", "unreadable",
                          Text(printable(snap["error"])))
            continue
        table.add_row("*" if snap["current"] else "", Text(printable(snap["version"])),
                      Text(printable((snap["created_at"] or "")[:16])),
                      Text(printable((snap["data_as_of"] or "")[:10])),
                      f"{snap['users']:,}", f"{snap['rows']:,}", "passed" if snap["audit_passed"] else "FAILED",
                      Text(printable(", ".join(f"{suite} {'ok' if ok else 'FAILED'}"
                                               for suite, ok in snap["eval"].items()) or "-")))
    console.print(table)
    console.print(f"current: {printable(listing['current'] or 'none (nothing published yet)')}", markup=False,
                  highlight=False)
    for failure in listing["failed_audits"]:
        console.print(f"audit failed {printable(failure['at'][:19])} {printable(failure['version'])}: "
                      f"{printable(failure['reason'])}", markup=False, highlight=False)


@main.command()
@click.argument("version")
@click.pass_context
def rollback(ctx: click.Context, version: str) -> None:
    """Put an earlier published snapshot VERSION back in service (online readers follow within a second)."""
    from selfmodel.publish import rollback as run_rollback

    with _snapshot_errors():
        previous = run_rollback(_settings(ctx), version)
    click.echo(f"CURRENT: {printable(previous or 'none')} -> {printable(version)}")


@main.command(name="analyst-copy")
@click.pass_context
def analyst_copy(ctx: click.Context) -> None:
    """Refresh the analysts' read-only copy of the warehouse now (flows do it after each write step)."""
    from selfmodel.analyst import refresh_analyst_copy

    with _clean_errors():
        target = refresh_analyst_copy(_settings(ctx))
    click.echo(f"analyst copy: {printable(target)}" if target else "warehouse.analyst_copy is null: no copy configured")


# --- the nightly run: once, now (`nightly`), or on a schedule on this machine (`serve`) ---------------------

def _timestamp_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    return None if value is None else Timestamp().convert(value, param, ctx)


def _offline_quiet_prefect() -> None:
    """Prefect as `make` runs it, unless the environment says otherwise: no telemetry (offline by default),
    only warnings on the console (this command prints its own summary; the run's logs still reach the Prefect
    API and UI in full), and time for a first start of its temporary server."""
    import os

    for name, value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
                        ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING"),
                        ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")):
        os.environ.setdefault(name, value)
    _quiet_interpreter_teardown()
    _printable_prefect_console()


def _printable_prefect_console() -> None:
    """Prefect's console handler prints run logs as they are; they quote data (file names, records), so
    its lines go through printable too. Set Prefect's logging up now (with the settings above), as importing
    prefect would; later set-ups in the process are incremental and keep these handlers."""
    import logging

    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, PrintableFormatter):
            handler.setFormatter(PrintableFormatter(handler.formatter))


def _quiet_interpreter_teardown() -> None:
    """Send stderr to /dev/null for the interpreter's very last moments, after every exit handler ran.

    When Prefect's background threads still hold DuckDB objects at exit, DuckDB's Python binding (nanobind)
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


def _nightly_config(ctx: click.Context, config_path: str | None) -> tuple[str, Settings]:
    """The command's --config, else the group's, else the default; absolute (the flow run may run elsewhere)."""
    from selfmodel.settings import find_config_path

    chosen = config_path or (ctx.parent.params.get("config_path") if ctx.parent else None)
    path = str(Path(find_config_path(chosen)).resolve())
    return path, load_settings(path)  # a bad config fails here, before a Prefect server starts


@main.command()
@click.option("--as-of", "as_of", default=None, metavar="TIMESTAMP", callback=_timestamp_option,
              help="Refresh beliefs as of this time (default: beliefs.as_of in the config); for backfills.")
@click.option("--suite", "suites", multiple=True, help="Run only this eval suite (repeatable; default: all).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (the same as `selfmodel --config`).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def nightly(ctx: click.Context, as_of: datetime | None, suites: tuple[str, ...], config_path: str | None,
            as_json: bool) -> None:
    """Run the nightly flow once, now: ingest, refresh beliefs, evaluate, publish (a Prefect flow run).

    Starts a temporary local Prefect server unless PREFECT_API_URL is set. Exits 0 when a snapshot was
    published, 5 when its audit refused it (the current one stays in service), 1 when a step failed (the
    steps after it did not run), 3 when another run holds the warehouse, 2 on a bad config.
    """
    with _clean_errors():
        config, settings = _nightly_config(ctx, config_path)
        _refuse_future_as_of(settings, as_of)  # before a Prefect server starts and the ingest step writes
        _offline_quiet_prefect()
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        from flows.nightly import nightly as nightly_flow

        # One run from a terminal: a heartbeat thread would only add about a second while joined at the end.
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            state = nightly_flow(config_path=config, as_of=as_of, suites=list(suites) or None, return_state=True)
    summary, exit_code = _nightly_result(state)
    if as_json:
        click.echo(json.dumps({**summary, "state": state.name, "flow_run_id": str(state.state_details.flow_run_id)},
                              default=_json_default))
    else:
        _print_nightly(summary, state, settings)
    if exit_code:
        sys.exit(exit_code)


def _refuse_future_as_of(settings: Settings, as_of: datetime | None) -> None:
    from selfmodel.beliefs.refresh import RefreshError, refuse_future_as_of

    try:
        refuse_future_as_of(as_of, settings)
    except RefreshError as exc:
        raise ConfigError(str(exc)) from None


def _nightly_result(state) -> tuple[dict, int]:
    """The run's summary (from its result, or from the step that failed) and the command's exit code."""
    from selfmodel.nightly import StepFailed

    if state.is_completed():
        summary = state.result()
        if state.name == "Skipped":
            return summary, EXIT_BUSY
        return summary, 0 if summary["status"] == "published" else EXIT_AUDIT_FAILED
    error = state.result(raise_on_failure=False)
    steps = [step.to_json() for step in error.steps] if isinstance(error, StepFailed) else []
    return {"status": "failed", "steps": steps, "reason": state.message}, EXIT_BATCH_FAILED


def _print_nightly(summary: dict, state, settings: Settings) -> None:
    from rich.table import Table

    run_id = state.state_details.flow_run_id
    snapshot = summary.get("snapshot") or {}
    headline = {
        "published": f"published snapshot {snapshot.get('version')}",
        "not_published": "snapshot NOT published (the audit refused it)",
        "failed": "FAILED",
        "skipped": "skipped",
    }.get(summary["status"], summary["status"])
    # Plain lines (no wrapping) for what people grep and paste; a table for the steps.
    click.echo(f"nightly flow run {printable(summary.get('run_name') or run_id)}: {printable(headline)}")
    if summary.get("steps"):
        table = Table()
        for column in ("step", "result", "seconds", "rows in", "rows out", "quarantined"):
            table.add_column(column, justify="left" if column in ("step", "result") else "right")
        for step in summary["steps"]:
            table.add_row(step["step"], step["status"],
                          *("" if step[k] is None else (f"{step[k]:.1f}" if k == "seconds" else f"{step[k]:,}")
                            for k in ("seconds", "rows_in", "rows_out", "quarantined")))
        _console().print(table)
        for step in summary["steps"]:
            if step["detail"]:  # error texts: they quote file names and records; evaluate's spans lines
                click.echo(f"  {step['step']}: {printable(step['detail'], multiline=True)}")
    if summary.get("reason"):
        click.echo(printable(summary["reason"], multiline=True))
    where = [("warehouse", str(settings.warehouse_path))]
    if settings.analyst_copy_path:
        where.append(("analyst copy", f"{settings.analyst_copy_path}  (query this one, read-only)"))
    if snapshot.get("current"):
        where.append(("snapshot", f"{settings.snapshots_path / snapshot['current']}"
                      + (f"  (content hash {snapshot['content_hash'][:16]})" if snapshot.get("published") else "")))
    if summary.get("report"):
        where.append(("report", summary["report"]))
    if summary.get("data_docs"):
        where.append(("data docs", summary["data_docs"]))
    where.append(("Prefect UI", _prefect_ui_hint(run_id)))
    click.echo()
    for label, value in where:
        click.echo(f"{label + ':':<14}{printable(value)}")


def _prefect_ui_hint(flow_run_id) -> str:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() if PREFECT_API_URL.value() else None
    if ui:
        return f"{ui}/runs/flow-run/{flow_run_id}"
    return (f"run `prefect server start` (same PREFECT_HOME), then open "
            f"http://127.0.0.1:4200/runs/flow-run/{flow_run_id}")


@main.command()
@click.option("--cron", default=None, help="5-field cron (default: nightly.cron in the config, 0 2 * * *).")
@click.option("--timezone", "timezone_name", default=None,
              help="IANA time zone the cron is read in (default: nightly.timezone in the config, UTC).")
@click.option("--name", default="nightly", show_default=True, help="Deployment name shown in the Prefect UI.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (the same as `selfmodel --config`).")
@click.pass_context
def serve(ctx: click.Context, cron: str | None, timezone_name: str | None, name: str, config_path: str | None) -> None:
    """Schedule the nightly flow on this machine (Prefect flow.serve) and run it at each cron time until stopped.

    No work pool or worker needed: this process is both. Needs PREFECT_API_URL pointing at a running
    server (`prefect server start`): its scheduler creates the runs, and its UI shows them.
    """
    from selfmodel.settings import NightlySettings

    with _clean_errors():
        config, settings = _nightly_config(ctx, config_path)
        _offline_quiet_prefect()
        from pydantic import ValidationError

        from flows.nightly import nightly_deployment

        try:
            schedule = NightlySettings(cron=cron or settings.nightly.cron,
                                       timezone=timezone_name or settings.nightly.timezone)
            deployment = nightly_deployment(config, schedule.cron, schedule.timezone, name=name)
        except ValidationError as exc:
            raise ConfigError("invalid schedule: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                                for e in exc.errors())) from None
        except ValueError as exc:  # Prefect's own check of the cron expression
            raise ConfigError(f"invalid schedule: {exc}") from None
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            # Prefect's temporary server does not run its scheduler: nothing would ever start.
            raise ConfigError("selfmodel serve needs a Prefect server that runs schedules. Start one with "
                              "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api")
    from prefect import serve as prefect_serve

    click.echo(f"serving nightly/{printable(name)}: cron '{schedule.cron}' ({schedule.timezone}), "
               f"config {printable(config)}; "
               f"runs appear at {PREFECT_API_URL.value().removesuffix('/api')}/runs")
    prefect_serve(deployment)


@main.command()
@click.option("--as-of", "as_of", type=Timestamp(), default=None,
              help="Believe as of this time (default: beliefs.as_of in the config, the newest event).")
@click.option("--full", is_flag=True, help="Re-extract every event and recompute every belief from scratch.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def refresh(ctx: click.Context, as_of: datetime | None, full: bool, as_json: bool) -> None:
    """Extract observations from new events and fold them into beliefs (incremental unless --full)."""
    from selfmodel.beliefs.refresh import RefreshError, refresh_beliefs
    from warehouse.db import connect

    with _clean_errors(), ExitStack() as stack:
        settings = _settings(ctx)
        stack.enter_context(_sole_writer(settings, "refresh"))
        con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
        try:
            report = refresh_beliefs(con, settings, as_of=as_of, full=full)
        except RefreshError as exc:
            raise ConfigError(str(exc)) from None
        finally:
            con.close()
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    console = _console()
    if report.as_of is None:
        console.print("no events yet: run `selfmodel ingest` first")
        return
    console.print(f"refresh {report.refresh_id} ({report.mode}) as of {report.as_of.isoformat()}")
    console.print(f"  events extracted      {report.events_extracted:>10,}")
    console.print(f"  observations new      {report.observations_extracted:>10,}")
    console.print(f"  observations folded   {report.observations_folded:>10,}  into {report.groups_touched:,} (user, key) groups")
    console.print(f"  beliefs in total      {report.beliefs_total:>10,}")
    if report.llm and "requests" in report.llm:
        from selfmodel.llm.extraction import summary_line

        console.print(f"  {summary_line(report.llm)}")


@main.command()
@click.option("--from", "start", type=Timestamp(), required=True, help="The first night (an ISO time).")
@click.option("--to", "end", type=Timestamp(), required=True, help="The last night (an ISO time, included).")
@click.option("--every", "every_days", type=FiniteFloatRange(0, MAX_DAYS_BETWEEN_NIGHTS, min_open=True),
              default=1.0, show_default=True, help="Days between nights.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def backfill(ctx: click.Context, start: datetime, end: datetime, every_days: float, as_json: bool) -> None:
    """Rebuild belief history night by night over a range, as nightly refreshes would have written it.

    The first night drops what was believed from then on and folds every stored observation up to it;
    each later night is an incremental refresh; beliefs already as of a later time are brought back to
    it. Events must be ingested first. No snapshot is published.
    """
    from selfmodel.beliefs.backfill import BackfillError, backfill_beliefs
    from selfmodel.beliefs.refresh import RefreshError
    from warehouse.db import connect

    console = _console()
    with _clean_errors(), ExitStack() as stack:
        settings = _settings(ctx)
        stack.enter_context(_sole_writer(settings, "backfill"))
        con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
        stack.callback(con.close)
        try:
            report = backfill_beliefs(
                con, settings, start, end, timedelta(days=every_days),
                on_night=None if as_json else lambda night: console.print(
                    f"  {night.as_of:%Y-%m-%d %H:%M}  {night.mode:<11} {night.observations_folded:>10,} folded "
                    f"{night.beliefs_total:>10,} beliefs", markup=False, highlight=False))
        except (BackfillError, RefreshError) as exc:
            raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    console.print(f"backfilled {len(report.nights)} nights from {start.isoformat()} to {end.isoformat()}",
              markup=False, highlight=False)
    if report.caught_up_to:
        console.print(f"beliefs brought back up to {report.caught_up_to.isoformat()}", markup=False, highlight=False)


@main.command()
@click.argument("user_id")
@click.option("--as-of", "as_of", type=Timestamp(), default=None,
              help="What the evidence said at this time (recomputed from observations up to then).")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.option("--explain", is_flag=True, help="Show the evidence events behind each belief.")
@click.option("--all", "show_all", is_flag=True, help="List every belief, not only the 30 most confident.")
@click.pass_context
def beliefs(ctx: click.Context, user_id: str, as_of: datetime | None, as_json: bool, explain: bool,
            show_all: bool) -> None:
    """Show what we believe about USER_ID, with confidence and evidence."""
    from selfmodel.beliefs.read import user_beliefs
    from warehouse.db import connect

    with _clean_errors():
        settings = _settings(ctx)
        con = connect(settings.warehouse_path, read_only=True)
        try:
            model = user_beliefs(con, settings, user_id, as_of=as_of, explain=explain)
        finally:
            con.close()
    if as_json:
        click.echo(json.dumps(model, default=_json_default))
        return
    console = _console()
    threshold = settings.beliefs.serving_threshold
    if model["as_of"] is None:
        console.print("no beliefs yet: run `selfmodel refresh` first")
        return
    console.print(f"user {printable(user_id)} as of {model['as_of'].isoformat()} (serving threshold {threshold})",
                  markup=False, highlight=False)
    if not model["beliefs"]:
        console.print("  no evidence about this user")
    shown = model["beliefs"] if show_all else model["beliefs"][:30]
    keys = [printable(belief["key"]) for belief in shown]  # tags become keys (expertise@<tag>) and values
    key_width = min(40, max([28, *map(len, keys)]))
    for key, belief in zip(keys, shown):
        mark = "*" if belief["confidence"] >= threshold else " "
        shown = _confidence(belief["confidence"])
        console.print(f" {mark} {key:<{key_width}} {printable(belief['value'])[:40]:<40} {shown}  "
                      f"({_observations(belief['evidence_count'])}, last {belief['last_evidence_at']:%Y-%m-%d})",
                      markup=False, highlight=False)
        for evidence in belief.get("evidence", [])[:5]:
            console.print(f"       {evidence['observed_at']:%Y-%m-%d} {printable(evidence['event_id']):<24} "
                          f"w={evidence['weight']:.2f} {printable(evidence['event_text'] or '')[:70]}",
                          markup=False, highlight=False)
    if len(shown) < len(model["beliefs"]):
        console.print(f"  ... {len(model['beliefs']) - len(shown)} less confident beliefs (--all lists them)")
    console.print("  * = enrichable (confidence >= serving threshold)")


@main.command()
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def forget(ctx: click.Context, user_id: str, yes: bool) -> None:
    """Delete everything held about USER_ID: warehouse tables, quarantined records, eval results, alert texts,
    published snapshots (rewritten without the user) and the analyst copy; record that a deletion happened."""
    from selfmodel.forget import forget as forget_everywhere

    if not yes and not click.confirm(f"Delete everything held about {printable(user_id)}?", default=False):
        sys.exit(EXIT_BATCH_FAILED)
    with _snapshot_errors(), ExitStack() as stack:
        settings = _settings(ctx)
        stack.enter_context(_sole_writer(settings, "forget"))
        report = forget_everywhere(settings, user_id)
    for path in report.still_named_in:
        click.echo(f"warning: {printable(path)} still names user {printable(user_id)} (the team's own eval file, "
                   "which forget does not edit): remove the user there", err=True)
    click.echo(_json_text(report.to_json()))


def _json_text(payload) -> str:
    """One JSON document for programs: valid and faithful, in ASCII, so a control or bidi character in the
    data travels as a \\u escape (decoded back exactly) and never reaches a terminal raw."""
    return json.dumps(payload, default=_json_default)


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


if __name__ == "__main__":
    main()
