"""The `selfmodel` command line. Commands call the domain code directly (no Prefect server is started);
the flows in flows/ wrap the same code for deployments and the nightly run."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from contextlib import contextmanager
from typing import Iterator

import click

from selfmodel.settings import ConfigError, Settings, load_settings
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
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except WarehouseBusyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BUSY)
    except WarehouseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BATCH_FAILED)


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
    from flows.ingest import ingest as ingest_flow
    from selfmodel.ingest import BatchReport

    config_path = ctx.parent.params.get("config_path") if ctx.parent else None
    state = ingest_flow(config_path=config_path, source=source_name, return_state=True)
    if not state.is_completed():
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
    """stdout console; wide enough for the count tables when output is piped or logged."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=120)


def _print_batches(reports, settings: Settings) -> None:
    from rich.table import Table

    table = Table(title="ingest")
    for column in ("source", "status", "rows read", "loaded", "duplicates", "quarantined", "late", "labels", "files"):
        table.add_column(column, justify="left" if column in ("source", "status", "files") else "right")
    for report in reports:
        actions: dict[str, int] = {}
        for entry in report.files:
            actions[entry["action"]] = actions.get(entry["action"], 0) + 1
        table.add_row(report.source, report.status, f"{report.rows_read:,}", f"{report.loaded:,}",
                      f"{report.duplicates:,}", f"{report.quarantined:,}", f"{report.late_events:,}",
                      f"{report.labels_loaded:,}", ", ".join(f"{n} {a}" for a, n in sorted(actions.items())))
    console = _console()
    console.print(table)
    for report in reports:
        if report.error:
            console.print(f"[red]{report.source}: batch failed: {report.error}[/red]")
    console.print(f"warehouse: {settings.warehouse_path}")
    if any(report.quarantined for report in reports):
        console.print("see why records were quarantined: selfmodel quarantine")


@main.command()
@click.option("--source", "source_name", default=None, help="Only this source.")
@click.option("--reason", default=None, help="Only this reason (e.g. malformed_json).")
@click.option("--limit", default=20, show_default=True, help="How many example records to show.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def quarantine(ctx: click.Context, source_name: str | None, reason: str | None, limit: int, as_json: bool) -> None:
    """Show what was quarantined and why: counts per source and reason, then example records."""
    from selfmodel.quarantine import quarantine_summary

    with _clean_errors():
        settings = _settings(ctx)
        summary = quarantine_summary(settings.warehouse_path, source_name, reason, limit)
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    from rich.table import Table

    console = _console()
    counts = Table(title="quarantine by reason")
    for column in ("source", "reason", "records"):
        counts.add_column(column, justify="right" if column == "records" else "left")
    for row in summary["counts"]:
        counts.add_row(row["source"], row["reason"], f"{row['records']:,}")
    console.print(counts)
    if not summary["counts"]:
        console.print("nothing quarantined" + (" for that filter" if source_name or reason else ""))
    for record in summary["records"]:
        where = f"{record['file']}:{record['line_no']}" if record["line_no"] is not None else record["file"]
        console.print(f"[bold]{record['reason']}[/bold] {where}  {record['detail'] or ''}", markup=True,
                      highlight=False)
        console.print("    " + (record["raw_preview"] or "<empty>"), markup=False, highlight=False)


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
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


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

    with _clean_errors():
        settings = _settings(ctx)
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
    console.print(f"user {user_id} as of {model['as_of'].isoformat()} (serving threshold {threshold})")
    if not model["beliefs"]:
        console.print("  no evidence about this user")
    shown = model["beliefs"] if show_all else model["beliefs"][:30]
    for belief in shown:
        mark = "*" if belief["confidence"] >= threshold else " "
        console.print(f" {mark} {belief['key']:<28} {belief['value'][:40]:<40} {belief['confidence']:.3f}  "
                      f"({belief['evidence_count']} observations, last {belief['last_evidence_at']:%Y-%m-%d})",
                      markup=False, highlight=False)
        for evidence in belief.get("evidence", [])[:5]:
            console.print(f"       {evidence['observed_at']:%Y-%m-%d} {evidence['event_id']:<24} w={evidence['weight']:.2f} "
                          f"{(evidence['event_text'] or '')[:70]}", markup=False, highlight=False)
    if len(shown) < len(model["beliefs"]):
        console.print(f"  ... {len(model['beliefs']) - len(shown)} less confident beliefs (--all lists them)")
    console.print("  * = enrichable (confidence >= serving threshold)")


@main.command()
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def forget(ctx: click.Context, user_id: str, yes: bool) -> None:
    """Delete USER_ID's events, observations, beliefs and history; record that a deletion happened."""
    from selfmodel.beliefs.read import forget_user
    from warehouse.db import connect

    if not yes and not click.confirm(f"Delete everything held about {user_id}?", default=False):
        sys.exit(EXIT_BATCH_FAILED)
    with _clean_errors():
        settings = _settings(ctx)
        con = connect(settings.warehouse_path, memory_limit=settings.warehouse.memory_limit)
        try:
            counts = forget_user(con, user_id)
        finally:
            con.close()
    click.echo(json.dumps({"user_id": user_id, "deleted": counts}))


def _json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


if __name__ == "__main__":
    main()
