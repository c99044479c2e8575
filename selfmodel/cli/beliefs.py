"""Beliefs in the warehouse: `refresh`, `backfill`, `beliefs`, and `forget`."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta

import click

from selfmodel.cli import render
from selfmodel.cli.app import main
from selfmodel.cli.common import clean_errors, reading_warehouse, settings_of, snapshot_errors, sole_writer, \
    writing_warehouse
from selfmodel.cli.exit_codes import ExitCode
from selfmodel.cli.params import MAX_DAYS_BETWEEN_NIGHTS, FiniteFloatRange, Timestamp
from selfmodel.settings import ConfigError
from selfmodel.terminal import printable


@main.command()
@click.option("--as-of", "as_of", type=Timestamp(), default=None,
              help="Believe as of this time (default: beliefs.as_of in the config, the newest event).")
@click.option("--full", is_flag=True, help="Re-extract every event and recompute every belief from scratch.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def refresh(ctx: click.Context, as_of: datetime | None, full: bool, as_json: bool) -> None:
    """Extract observations from new events and fold them into beliefs (incremental unless --full)."""
    from selfmodel.beliefs.refresh import RefreshError, refresh_beliefs

    with clean_errors():
        settings = settings_of(ctx)
        with writing_warehouse(settings, "refresh") as con:
            try:
                with render.step_progress("refresh", enabled=not as_json and sys.stderr.isatty()) as progress:
                    report = refresh_beliefs(con, settings, as_of=as_of, full=full, progress=progress)
            except RefreshError as exc:
                raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    render.print_refresh(report)


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

    out = render.console()
    with clean_errors():
        settings = settings_of(ctx)
        with writing_warehouse(settings, "backfill") as con:
            try:
                report = backfill_beliefs(
                    con, settings, start, end, timedelta(days=every_days),
                    on_night=None if as_json else lambda night: render.print_backfill_night(out, night))
            except (BackfillError, RefreshError) as exc:
                raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    render.print_backfill(out, report, start, end)


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

    with clean_errors():
        settings = settings_of(ctx)
        with reading_warehouse(settings) as con:
            model = user_beliefs(con, settings, user_id, as_of=as_of, explain=explain)
    if as_json:
        click.echo(json.dumps(model, default=render.json_default))
        return
    render.print_beliefs(model, user_id, settings.beliefs.serving_threshold, show_all)


@main.command()
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def forget(ctx: click.Context, user_id: str, yes: bool) -> None:
    """Delete everything held about USER_ID: warehouse tables, quarantined records, eval results, alert texts,
    published snapshots (rewritten without the user) and the analyst copy; record that a deletion happened."""
    from selfmodel.forget import forget as forget_everywhere

    if not yes and not click.confirm(f"Delete everything held about {printable(user_id)}?", default=False):
        sys.exit(ExitCode.FAILED)
    with snapshot_errors():
        settings = settings_of(ctx)
        with sole_writer(settings, "forget"):
            report = forget_everywhere(settings, user_id)
    for path in report.still_named_in:
        click.echo(f"warning: {printable(path)} still names user {printable(user_id)} (the team's own eval file, "
                   "which forget does not edit): remove the user there", err=True)
    click.echo(render.json_text(report.to_json()))
