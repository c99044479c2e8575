"""Prefect as the CLI starts it: the only module of the command line that imports Prefect or `flows`.

Commands other than `nightly`, `serve` and `ingest --prefect` run the domain code directly and never pay
for Prefect's import or a server.
"""

from __future__ import annotations

import sys
from datetime import datetime

from selfmodel.cli.common import quiet_interpreter_teardown
from selfmodel.cli.exit_codes import ExitCode
from selfmodel.settings import ConfigError
from selfmodel.terminal import PrintableFormatter
from warehouse.db import WarehouseBusyError, WarehouseError


def offline_quiet_prefect() -> None:
    """Prefect as `make` runs it, unless the environment says otherwise: no telemetry (offline by default),
    only warnings on the console (this command prints its own summary; the run's logs still reach the Prefect
    API and UI in full), and time for a first start of its temporary server."""
    import os

    for name, value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
                        ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING"),
                        ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")):
        os.environ.setdefault(name, value)
    quiet_interpreter_teardown()
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


def ingest_via_prefect(config_path: str | None, source_name: str | None) -> list:
    """`selfmodel ingest --prefect`: the ingest flow run's batch reports; busy and bad config raise as without."""
    offline_quiet_prefect()  # as `selfmodel nightly` runs Prefect (before it is imported): no telemetry, ...
    from flows.ingest import ingest as ingest_flow
    from selfmodel.ingest import BatchReport

    state = ingest_flow(config_path=config_path, source=source_name, return_state=True)
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        if isinstance(error, (WarehouseBusyError, ConfigError)):  # exit 3 or 2, as without --prefect
            raise error
        raise WarehouseError(f"the ingest flow run ended {state.name}: {state.message}")
    return [BatchReport(**report) for report in state.result()]


def run_nightly(config_path: str, as_of: datetime | None, suites: list[str] | None):
    """Run the nightly flow once, now, and return its final state."""
    offline_quiet_prefect()
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows.nightly import nightly as nightly_flow

    # One run from a terminal: a heartbeat thread would only add about a second while joined at the end.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return nightly_flow(config_path=config_path, as_of=as_of, suites=suites, return_state=True)


def nightly_result(state) -> tuple[dict, int]:
    """The run's summary (from its result, or from the step that failed) and the command's exit code."""
    from selfmodel.nightly import StepFailed

    if state.is_completed():
        summary = state.result()
        if state.name == "Skipped":
            return summary, ExitCode.BUSY
        return summary, ExitCode.OK if summary["status"] == "published" else ExitCode.AUDIT_FAILED
    error = state.result(raise_on_failure=False)
    steps = [step.to_json() for step in error.steps] if isinstance(error, StepFailed) else []
    return {"status": "failed", "steps": steps, "reason": state.message}, ExitCode.FAILED


def prefect_ui_hint(flow_run_id) -> str:
    """Where the flow run shows in the Prefect UI."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    ui = PREFECT_UI_URL.value() if PREFECT_API_URL.value() else None
    if ui:
        return f"{ui}/runs/flow-run/{flow_run_id}"
    return (f"run `prefect server start` (same PREFECT_HOME), then open "
            f"http://127.0.0.1:4200/runs/flow-run/{flow_run_id}")


def nightly_deployment(config_path: str, cron: str, timezone_name: str, name: str):
    """The nightly flow's deployment on `cron`; a bad schedule is a ConfigError. Needs a server that runs
    schedules (PREFECT_API_URL): Prefect's temporary server does not run its scheduler."""
    from pydantic import ValidationError

    from flows.nightly import nightly_deployment as deployment_of
    from selfmodel.settings import NightlySettings

    offline_quiet_prefect()
    try:
        schedule = NightlySettings(cron=cron, timezone=timezone_name)
        deployment = deployment_of(config_path, schedule.cron, schedule.timezone, name=name)
    except ValidationError as exc:
        raise ConfigError("invalid schedule: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                            for e in exc.errors())) from None
    except ValueError as exc:  # Prefect's own check of the cron expression
        raise ConfigError(f"invalid schedule: {exc}") from None
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ConfigError("selfmodel serve needs a Prefect server that runs schedules. Start one with "
                          "`prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api")
    return deployment, schedule, PREFECT_API_URL.value()


def serve(deployment) -> None:
    from prefect import serve as prefect_serve

    prefect_serve(deployment)
