"""Evaluation and data quality: `eval`, `calibrate`, `report` and `expectations`."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from selfmodel.cli import render
from selfmodel.cli.app import main
from selfmodel.cli.common import clean_errors, settings_of, writing_warehouse
from selfmodel.cli.exit_codes import ExitCode
from selfmodel.cli.params import Timestamp
from selfmodel.settings import ConfigError, Settings
from selfmodel.terminal import printable
from warehouse.db import WarehouseBusyError


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

    with clean_errors():
        settings = settings_of(ctx)
        with writing_warehouse(settings, "eval") as con:
            try:
                with render.step_progress("eval", enabled=not as_json and sys.stderr.isatty()) as progress:
                    runs = run_evals(con, settings, list(suites) or None, notify=_alert_hook(settings), as_of=as_of,
                                     progress=progress)
            except (ValueError, FileNotFoundError) as exc:
                raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"runs": [r.to_json() for r in runs]}, default=render.json_default))
    else:
        render.print_eval_runs(runs)
    if any(not r.passed for r in runs if not r.skipped):
        sys.exit(ExitCode.BAR_FAILED)


def _alert_hook(settings: Settings):
    """Alerts go out only when owners are configured; the hook records and delivers them."""
    from selfmodel.evals.notify import owner_alert_hook

    return owner_alert_hook(settings)


@main.command()
@click.option("--as-of", "as_of", type=Timestamp(), default=None,
              help="Calibrate as of a past time: only events up to it are seen (as eval --as-of).")
@click.option("--dry-run", is_flag=True, help="Fit and print the table of parameters; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON object on stdout.")
@click.pass_context
def calibrate(ctx: click.Context, as_of: datetime | None, dry_run: bool, as_json: bool) -> None:
    """Fit the belief model per key family to this warehouse's history (docs/reference.md "Calibration").

    Half-life, prior, evidence weights, repeat discount, base rates and a calibration map are fitted on
    windows before the evaluation's and adopted per family only when validation log loss improves. The
    next refresh re-folds every belief with them. Exits 0 (also when nothing improved).
    """
    from selfmodel.calibrate import calibrate as run_calibrate

    with clean_errors():
        settings = settings_of(ctx)
        with writing_warehouse(settings, "calibrate", lock=not dry_run) as con:
            try:
                result = run_calibrate(con, settings, as_of=as_of, dry_run=dry_run)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(json.dumps(result.to_json(), default=render.json_default))
    else:
        render.print_calibration(result)


@main.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the HTML (default: next to the warehouse, report.html).")
@click.pass_context
def report(ctx: click.Context, out_path: str | None) -> None:
    """Write the HTML eval report: reliability diagram, learning curve and metric trends."""
    from selfmodel.clock import SystemClock
    from selfmodel.evals.report import write_report
    from warehouse.db import connect

    with clean_errors():
        settings = settings_of(ctx)
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

    with clean_errors():
        settings = settings_of(ctx)
        with writing_warehouse(settings, "expectations") as con:
            try:
                reports = validate(con, settings, list(suites) or None, list(batch_ids) or None)
            except QualityError as exc:
                raise ConfigError(str(exc)) from None
            blocking = blocking_failures(con, list(suites) or None)
    index = data_docs_folder(settings) / "index.html"
    if as_json:
        click.echo(json.dumps({"validations": [r.to_json() for r in reports], "blocking": blocking,
                               "data_docs": str(index)}, default=render.json_default))
    else:
        render.print_validations(reports, blocking, index)
    if blocking:
        sys.exit(ExitCode.BLOCKED)
