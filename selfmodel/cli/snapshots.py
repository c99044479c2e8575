"""The published snapshots: `publish`, `lookup`, `enrich`, `api`, `snapshots`, `rollback`, and `analyst-copy`."""

from __future__ import annotations

import json
import sys

import click

from selfmodel.cli import render
from selfmodel.cli.app import main
from selfmodel.cli.common import clean_errors, quiet_interpreter_teardown, settings_of, snapshot_errors, \
    sole_writer
from selfmodel.cli.exit_codes import ExitCode
from selfmodel.cli.params import MAX_BELIEFS_USED, FiniteFloatRange
from selfmodel.settings import ConfigError, Settings
from selfmodel.terminal import printable


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

    with snapshot_errors():
        settings = settings_of(ctx)
        with sole_writer(settings, "publish"):
            result = run_publish(settings, on_audit_failure=refused_snapshot_hook(settings, "selfmodel publish"))
    if result.alert_error:  # recorded as undelivered; the refusal itself stands
        click.echo(f"warning: the nightly owners could not be told: {printable(result.alert_error)}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        render.print_publish(result)
    if not result.published:
        sys.exit(ExitCode.AUDIT_FAILED)


def _belief_store(settings: Settings):
    from warehouse.online import BeliefStore

    return BeliefStore.open(settings.snapshots_path, watch=False)


@main.command()
@click.argument("user_id")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def lookup(ctx: click.Context, user_id: str, as_json: bool) -> None:
    """Show USER_ID's self-model in the published snapshot (what the online service sees)."""
    with snapshot_errors():
        store = _belief_store(settings_of(ctx))
        model = store.get(user_id)
        threshold = store.manifest["serving_threshold"]
    if as_json:
        # json.dumps, not pydantic's model_dump_json: it writes U+202E and C1 controls raw (see json_text).
        click.echo(render.json_text(model.model_dump(mode="json")))
        return
    render.print_lookup(model, user_id, threshold)


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
    with snapshot_errors():
        store = _belief_store(settings_of(ctx))
        try:
            enrichment = store.enrich(query, user_id, min_confidence=min_confidence, max_beliefs=max_beliefs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(render.json_text(enrichment.model_dump(mode="json", include={
            "user_id", "enriched_query", "beliefs_used", "snapshot_version", "min_confidence"})))
        return
    render.print_enrichment(enrichment)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; the API has no authentication).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.pass_context
def api(ctx: click.Context, host: str, port: int) -> None:
    """Serve the published snapshot over HTTP until interrupted: GET /users/ID/beliefs, POST /enrich, GET /healthz.

    Follows CURRENT as `BeliefStore` does; started before anything is published, it answers 503 until a
    snapshot appears. Reference: selfmodel/api.py and docs/cli.md.
    """
    from selfmodel.api import serve

    quiet_interpreter_teardown()  # no DuckDB "leaked instance" lines after a stop (see there)
    with clean_errors():  # a port in use or an unknown host: one line, exit 1
        serve(settings_of(ctx), host, port)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def snapshots(ctx: click.Context, as_json: bool) -> None:
    """List the published snapshots (newest first) with their audits, and the recent failed audits."""
    from selfmodel.publish import list_snapshots

    with snapshot_errors():
        listing = list_snapshots(settings_of(ctx))
    if as_json:
        click.echo(json.dumps(listing, default=render.json_default))
        return
    render.print_snapshots(listing)


@main.command()
@click.argument("version")
@click.pass_context
def rollback(ctx: click.Context, version: str) -> None:
    """Put an earlier published snapshot VERSION back in service (online readers follow within a second)."""
    from selfmodel.publish import rollback as run_rollback

    with snapshot_errors():
        previous = run_rollback(settings_of(ctx), version)
    click.echo(f"CURRENT: {printable(previous or 'none')} -> {printable(version)}")


@main.command(name="analyst-copy")
@click.pass_context
def analyst_copy(ctx: click.Context) -> None:
    """Refresh the analysts' read-only copy of the warehouse now (flows do it after each write step)."""
    from selfmodel.analyst import refresh_analyst_copy

    with clean_errors():
        target = refresh_analyst_copy(settings_of(ctx))
    click.echo(f"analyst copy: {printable(target)}" if target else "warehouse.analyst_copy is null: no copy configured")
