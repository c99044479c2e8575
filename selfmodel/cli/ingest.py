"""`selfmodel ingest` and `selfmodel quarantine`: records in, and what was kept out and why."""

from __future__ import annotations

import json
import sys

import click

from selfmodel.cli import render
from selfmodel.cli.app import main
from selfmodel.cli.common import clean_errors, settings_of, sole_writer
from selfmodel.cli.exit_codes import ExitCode
from selfmodel.cli.params import MAX_EXAMPLE_RECORDS
from selfmodel.settings import ConfigError


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

    with clean_errors():
        settings = settings_of(ctx)
        if source_name:
            settings.source(source_name)  # unknown name: a clear error before anything opens
        if not settings.sources:
            raise ConfigError("the config declares no sources")
        with sole_writer(settings, "ingest"):
            if via_prefect:
                from selfmodel.cli.prefect_runtime import ingest_via_prefect

                config_path = ctx.parent.params.get("config_path") if ctx.parent else None
                reports = ingest_via_prefect(config_path, source_name)
            else:
                with render.progress(enabled=not as_json and sys.stderr.isatty()) as progress:
                    reports = run_ingest(settings, source_name, progress=progress)
    if as_json:
        click.echo(json.dumps({"batches": [report.to_json() for report in reports]}, default=str))
    else:
        render.print_batches(reports, settings)
    if any(report.status != "committed" for report in reports):
        sys.exit(ExitCode.FAILED)


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

    with clean_errors():
        settings = settings_of(ctx)
        if source_name:
            settings.source(source_name)  # unknown name: the same clear error as ingest gives
        summary = quarantine_summary(settings.warehouse_path, source_name, reason, limit)
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    render.print_quarantine(summary, filtered=bool(source_name or reason))
