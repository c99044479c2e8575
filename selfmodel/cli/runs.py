"""The nightly run: once, now (`nightly`), or on a schedule on this machine (`serve`)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from selfmodel.cli import render
from selfmodel.cli.app import main
from selfmodel.cli.common import clean_errors
from selfmodel.cli.params import Timestamp
from selfmodel.settings import ConfigError, Settings, load_settings
from selfmodel.terminal import printable


def _nightly_config(ctx: click.Context, config_path: str | None) -> tuple[str, Settings]:
    """The command's --config, else the group's, else the default; absolute (the flow run may run elsewhere)."""
    from selfmodel.settings import find_config_path

    chosen = config_path or (ctx.parent.params.get("config_path") if ctx.parent else None)
    path = str(Path(find_config_path(chosen)).resolve())
    return path, load_settings(path)  # a bad config fails here, before a Prefect server starts


def _refuse_future_as_of(settings: Settings, as_of: datetime | None) -> None:
    from selfmodel.beliefs.refresh import RefreshError, refuse_future_as_of

    try:
        refuse_future_as_of(as_of, settings)
    except RefreshError as exc:
        raise ConfigError(str(exc)) from None


@main.command()
@click.option("--as-of", "as_of", type=Timestamp(), default=None, metavar="TIMESTAMP",
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
    from selfmodel.cli import prefect_runtime

    with clean_errors():
        config, settings = _nightly_config(ctx, config_path)
        _refuse_future_as_of(settings, as_of)  # before a Prefect server starts and the ingest step writes
        state = prefect_runtime.run_nightly(config, as_of, list(suites) or None)
    summary, exit_code = prefect_runtime.nightly_result(state)
    flow_run_id = state.state_details.flow_run_id
    if as_json:
        click.echo(json.dumps({**summary, "state": state.name, "flow_run_id": str(flow_run_id)},
                              default=render.json_default))
    else:
        render.print_nightly(summary, flow_run_id, settings, prefect_runtime.prefect_ui_hint(flow_run_id))
    if exit_code:
        sys.exit(exit_code)


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
    from selfmodel.cli import prefect_runtime

    with clean_errors():
        config, settings = _nightly_config(ctx, config_path)
        deployment, schedule, api_url = prefect_runtime.nightly_deployment(
            config, cron or settings.nightly.cron, timezone_name or settings.nightly.timezone, name)
    click.echo(f"serving nightly/{printable(name)}: cron '{schedule.cron}' ({schedule.timezone}), "
               f"config {printable(config)}; "
               f"runs appear at {api_url.removesuffix('/api')}/runs")
    prefect_runtime.serve(deployment)
