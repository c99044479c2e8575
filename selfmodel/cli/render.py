"""How the commands print: rich consoles and tables for people, one JSON document for programs.

Everything printed quotes data (file names, ids, values, users' text), so it goes through `printable`: a
control or bidi character is shown as its escape and never acts on the terminal.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from datetime import datetime

import click

from selfmodel.settings import Settings
from selfmodel.terminal import printable


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def console():
    """stdout console; wide enough for the count tables and belief lines when output is piped or logged."""
    from rich.console import Console

    # emoji=False: a ":warning:" in someone's text is printed as written, not as an emoji.
    return Console(emoji=False) if sys.stdout.isatty() else Console(width=140, emoji=False)


@contextmanager
def progress(enabled: bool):
    """A progress bar on stderr while a long step runs; yields `update(name, done, total)` (None: no bar)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  transient=True, console=stderr_console()) as bar:

        def update(source: str, done: int, total: int) -> None:
            if source not in tasks:
                tasks[source] = bar.add_task(source, total=total or 1)
            bar.update(tasks[source], completed=done, total=total or 1)

        yield update


@contextmanager
def step_progress(title: str, enabled: bool):
    """A progress bar on stderr over a command's steps, as the domain code reports them (step, done, total)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True, console=stderr_console()) as bar:
        task = bar.add_task(title, total=None)

        def update(step: str, done: int, total: int) -> None:
            bar.update(task, description=f"{title}: {step}", completed=done, total=total or 1)

        yield update


def json_text(payload) -> str:
    """One JSON document for programs: valid and faithful, in ASCII, so a control or bidi character in the
    data travels as a \\u escape (decoded back exactly) and never reaches a terminal raw."""
    return json.dumps(payload, default=json_default)


def json_default(value):
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def confidence(value: float) -> str:
    """Three decimals, rounded down: confidence is below 1, and 0.99999 shown as 1.000 would read as certainty."""
    return f"{math.floor(value * 1000) / 1000:.3f}"


def observations(count: int) -> str:
    return f"{count} observation" if count == 1 else f"{count} observations"


# --- ingest -------------------------------------------------------------------------------------------------

def print_batches(reports, settings: Settings) -> None:
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
    out = console()
    out.print(table)
    for report in reports:
        if report.error:
            out.print(f"{report.source}: batch failed: {printable(report.error)}", style="red", markup=False)
    out.print(f"warehouse: {printable(settings.warehouse_path)}", markup=False)
    if any(report.quarantined for report in reports):
        out.print("see why records were quarantined: selfmodel quarantine")
    for report in reports:  # a file whose records were (nearly) all quarantined for a cause ingest recognised
        for entry in report.files:
            if entry.get("hint"):
                out.print(f"hint: {report.source}: {printable(entry['path'])}: {printable(entry['hint'])}",
                          style="yellow",
                          markup=False, soft_wrap=True)  # one line, so a suggested command copies whole


def print_quarantine(summary: dict, filtered: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    from selfmodel.quarantine import QUARANTINE_REASONS

    out = console()
    counts = Table(title="quarantine by reason")
    for column in ("source", "reason", "records", "what it means"):
        counts.add_column(column, justify="right" if column == "records" else "left")
    for row in summary["counts"]:
        counts.add_row(Text(printable(row["source"])), Text(printable(row["reason"])), f"{row['records']:,}",
                       Text(QUARANTINE_REASONS.get(row["reason"], "")))
    out.print(counts)
    if not summary["counts"]:
        out.print("nothing quarantined" + (" for that filter" if filtered else ""))
    for record in summary["records"]:
        where = f"{record['file']}:{record['line_no']}" if record["line_no"] is not None else record["file"]
        out.print(Text.assemble((printable(record["reason"]), "bold"),
                                f" {printable(where)}  {printable(record['detail'] or '')}"), highlight=False)
        out.print("    " + (printable(record["raw_preview"]) if record["raw_preview"] else "<empty>"),
                  markup=False, highlight=False)


# --- beliefs ------------------------------------------------------------------------------------------------

def print_refresh(report) -> None:
    out = console()
    if report.as_of is None:
        out.print("no events yet: run `selfmodel ingest` first")
        return
    out.print(f"refresh {report.refresh_id} ({report.mode}) as of {report.as_of.isoformat()}")
    out.print(f"  events extracted      {report.events_extracted:>10,}")
    out.print(f"  observations new      {report.observations_extracted:>10,}")
    out.print(f"  observations folded   {report.observations_folded:>10,}  into {report.groups_touched:,} (user, key) groups")
    out.print(f"  beliefs in total      {report.beliefs_total:>10,}")
    if report.llm and "requests" in report.llm:
        from selfmodel.llm.extraction import summary_line

        out.print(f"  {summary_line(report.llm)}")


def print_backfill_night(out, night) -> None:
    out.print(f"  {night.as_of:%Y-%m-%d %H:%M}  {night.mode:<11} {night.observations_folded:>10,} folded "
              f"{night.beliefs_total:>10,} beliefs", markup=False, highlight=False)


def print_backfill(out, report, start: datetime, end: datetime) -> None:
    out.print(f"backfilled {len(report.nights)} nights from {start.isoformat()} to {end.isoformat()}",
              markup=False, highlight=False)
    if report.caught_up_to:
        out.print(f"beliefs brought back up to {report.caught_up_to.isoformat()}", markup=False, highlight=False)


def print_beliefs(model: dict, user_id: str, threshold: float, show_all: bool) -> None:
    out = console()
    if model["as_of"] is None:
        out.print("no beliefs yet: run `selfmodel refresh` first")
        return
    out.print(f"user {printable(user_id)} as of {model['as_of'].isoformat()} (serving threshold {threshold})",
              markup=False, highlight=False)
    if not model["beliefs"]:
        out.print("  no evidence about this user")
    listed = model["beliefs"] if show_all else model["beliefs"][:30]
    keys = [printable(belief["key"]) for belief in listed]  # tags become keys (expertise@<tag>) and values
    key_width = min(40, max([28, *map(len, keys)]))
    for key, belief in zip(keys, listed):
        mark = "*" if belief["confidence"] >= threshold else " "
        out.print(f" {mark} {key:<{key_width}} {printable(belief['value'])[:40]:<40} "
                  f"{confidence(belief['confidence'])}  "
                  f"({observations(belief['evidence_count'])}, last {belief['last_evidence_at']:%Y-%m-%d})",
                  markup=False, highlight=False)
        for evidence in belief.get("evidence", [])[:5]:
            out.print(f"       {evidence['observed_at']:%Y-%m-%d} {printable(evidence['event_id']):<24} "
                      f"w={evidence['weight']:.2f} {printable(evidence['event_text'] or '')[:70]}",
                      markup=False, highlight=False)
    if len(listed) < len(model["beliefs"]):
        out.print(f"  ... {len(model['beliefs']) - len(listed)} less confident beliefs (--all lists them)")
    out.print("  * = enrichable (confidence >= serving threshold)")


# --- evaluation and data quality ----------------------------------------------------------------------------

def print_eval_runs(runs) -> None:
    out = console()
    for suite_run in runs:
        suite = printable(suite_run.suite)  # a case file names its suite
        if suite_run.skipped:
            out.print(f"{suite}: skipped ({printable(suite_run.skipped)})", markup=False)
            continue
        verdict = "PASSED" if suite_run.passed else "FAILED"
        if suite_run.bar and all(check.get("status") == "too_small" for check in suite_run.bar.values()):
            verdict += " (too small to judge)"
        out.print(f"{suite}: {verdict}", markup=False)
        for metric, check in suite_run.bar.items():
            value = "n/a" if check["value"] is None else f"{check['value']:.3f}"
            mark = "ok  " if check["passed"] else ("n/a " if check["passed"] is None else "FAIL")
            small = f", too small to judge: {check.get('judged')} judged" if check.get("status") == "too_small" else ""
            out.print(f"  {mark} {printable(metric):<36} {value:>8}  (bar {check['op']} {check['threshold']}{small})",
                      markup=False)
        shown = {k: v for k, v in suite_run.metrics.items() if k not in suite_run.bar and isinstance(v, (int, float))}
        if suite_run.suite == "enrichment":
            from selfmodel.evals.enrichment import summary_lines

            for line in summary_lines(suite_run.metrics, suite_run.details):
                out.print("  " + printable(line), markup=False)
        elif shown:
            out.print("       " + ", ".join(f"{printable(k)}={v:.3g}" if isinstance(v, float)
                                           else f"{printable(k)}={v}" for k, v in shown.items()), markup=False)
        if suite_run.details.get("per_key"):
            from selfmodel.evals.report import per_key_table_lines

            for line in per_key_table_lines(suite_run.details["per_key"], suite_run.bar):
                out.print("  " + printable(line), markup=False)
        for regression in suite_run.regressions:
            out.print(f"  REGRESSION {printable(regression['metric'])}: {regression['before']:.3f} -> "
                      f"{regression['after']:.3f}", markup=False)
        for alert in suite_run.alerts:
            out.print(f"  alert: {printable(alert)}", markup=False)


def print_calibration(result) -> None:
    from selfmodel.calibrate import calibration_table

    out = console()
    if result.reason:
        out.print(f"nothing fitted: {printable(result.reason)}", markup=False)
        return
    out.print(f"calibration on data up to {result.data_end:%Y-%m-%d}; the evaluation's windows start "
              f"{result.evaluation_from:%Y-%m-%d} and were not read", markup=False, highlight=False)
    for line in calibration_table(result):
        out.print(printable(line), markup=False, highlight=False)
    if result.dry_run:
        out.print("dry run: nothing written", markup=False)
    elif result.adopted:
        out.print(f"adopted as {printable(result.calibration_id)}; the next refresh re-folds every belief with it",
                  markup=False, highlight=False)
    else:
        out.print(f"recorded as {printable(result.calibration_id)}; not adopted (no family's validation log "
                  "loss improved)", markup=False, highlight=False)


def print_validations(reports, blocking: list[dict], index) -> None:
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
    out = console()
    if reports:
        out.print(table)
    else:
        out.print("nothing new to validate")
    for failure in blocking:
        out.print(f"[red]BLOCKING[/red] {escape(printable(failure['suite']))} on "
                  f"{escape(printable(failure['asset']))}: "
                  f"{escape(printable(failure['expectation']))}"
                  f" ({failure['unexpected_count'] if failure['unexpected_count'] is not None else 'crashed'})"
                  f"  {escape(printable(failure['data_docs'] or ''))}", highlight=False)
    out.print(f"data docs: {printable(index)}", markup=False, highlight=False)


# --- snapshots ----------------------------------------------------------------------------------------------

def print_publish(result) -> None:
    out = console()
    if result.published:
        out.print(f"published {result.version}: {result.rows:,} beliefs of {result.users:,} users, "
                  f"data as of {result.data_as_of.isoformat()}", markup=False, highlight=False)
    else:
        out.print(f"NOT published: the audit of {result.version} failed; "
                  f"{printable(result.current or 'no snapshot')} stays current", markup=False, highlight=False)
    for check in result.audit.checks:
        out.print(f"  {'ok  ' if check.passed else 'FAIL'} {check.name:<17} {printable(check.detail)}",
                  markup=False, highlight=False)


def print_lookup(model, user_id: str, threshold: float) -> None:
    out = console()
    out.print(f"user {printable(user_id)} in snapshot {printable(model.snapshot_version)} "
              f"(data as of {model.as_of.isoformat()}, serving threshold {threshold})",
              markup=False, highlight=False)
    if model.cold_start:
        out.print("  cold start: the snapshot holds nothing about this user", markup=False)
    keys = [printable(belief.key) for belief in model.beliefs]
    key_width = min(40, max([28, *map(len, keys)]))
    for key, belief in zip(keys, model.beliefs):
        mark = "*" if belief.confidence >= threshold else " "
        out.print(f" {mark} {key:<{key_width}} {printable(belief.value)[:40]:<40} {confidence(belief.confidence)}  "
                  f"({observations(belief.evidence_count)}, last {belief.last_evidence_at:%Y-%m-%d})",
                  markup=False, highlight=False)


def print_enrichment(enrichment) -> None:
    click.echo(printable(enrichment.enriched_query, multiline=True))  # the user's query is theirs to write
    click.echo(f"\n({len(enrichment.beliefs_used)} beliefs at or above {enrichment.min_confidence} used, "
               f"snapshot {printable(enrichment.snapshot_version)})", err=True)


def print_snapshots(listing: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
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
    out.print(table)
    out.print(f"current: {printable(listing['current'] or 'none (nothing published yet)')}", markup=False,
              highlight=False)
    for failure in listing["failed_audits"]:
        out.print(f"audit failed {printable(failure['at'][:19])} {printable(failure['version'])}: "
                  f"{printable(failure['reason'])}", markup=False, highlight=False)


# --- the nightly run ----------------------------------------------------------------------------------------

def print_nightly(summary: dict, flow_run_id, settings: Settings, prefect_ui: str) -> None:
    """The run's headline, its steps as a table, then where to look (`prefect_ui`: where the run shows)."""
    from rich.table import Table

    snapshot = summary.get("snapshot") or {}
    headline = {
        "published": f"published snapshot {snapshot.get('version')}",
        "not_published": "snapshot NOT published (the audit refused it)",
        "failed": "FAILED",
        "skipped": "skipped",
    }.get(summary["status"], summary["status"])
    # Plain lines (no wrapping) for what people grep and paste; a table for the steps.
    click.echo(f"nightly flow run {printable(summary.get('run_name') or flow_run_id)}: {printable(headline)}")
    if summary.get("steps"):
        table = Table()
        for column in ("step", "result", "seconds", "rows in", "rows out", "quarantined"):
            table.add_column(column, justify="left" if column in ("step", "result") else "right")
        for step in summary["steps"]:
            table.add_row(step["step"], step["status"],
                          *("" if step[k] is None else (f"{step[k]:.1f}" if k == "seconds" else f"{step[k]:,}")
                            for k in ("seconds", "rows_in", "rows_out", "quarantined")))
        console().print(table)
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
    where.append(("Prefect UI", prefect_ui))
    click.echo()
    for label, value in where:
        click.echo(f"{label + ':':<14}{printable(value)}")
