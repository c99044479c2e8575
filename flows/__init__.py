"""Prefect flows: thin wiring over the domain code in selfmodel/ (one module per flow).

Importing any of them prepares this process's Prefect the same way, however the flow is run (`selfmodel
nightly`, `selfmodel ingest --prefect`, a worker, a plain script):
- a temporary Prefect server started here dies with this process, `kill -9` included
  (selfmodel.prefect_server);
- a busy warehouse (another process holds it for longer than the run waits) and a snapshot refused by its
  audit are expected outcomes, not bugs: Prefect logs the failed task or flow run as its one-line message,
  without a traceback;
- the domain code's own log records (`selfmodel.*` loggers) made inside a flow or task run reach the Prefect
  API, so the UI shows them with the run's logs: what PREFECT_LOGGING_EXTRA_LOGGERS=selfmodel does, without
  its warning for each record made outside a run (the CLI and tests call the domain code directly too).
"""

import logging

from selfmodel.prefect_server import watch_temporary_server
from selfmodel.publish import AuditFailed
from warehouse.db import WarehouseBusyError

# Failures that are outcomes, each with a message that says all: the holder, or why the audit refused.
EXPECTED_OUTCOMES = (WarehouseBusyError, AuditFailed)


class OutcomeWithoutTraceback(logging.Filter):
    """Drops the traceback from a log record about an expected outcome (EXPECTED_OUTCOMES)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], EXPECTED_OUTCOMES):
            record.exc_info = None
            record.exc_text = None
        return True


def _log_outcomes_without_traceback() -> None:
    for name in ("prefect.flow_runs", "prefect.task_runs"):  # the loggers of Prefect's run engines
        logger = logging.getLogger(name)
        if not any(isinstance(existing, OutcomeWithoutTraceback) for existing in logger.filters):
            logger.addFilter(OutcomeWithoutTraceback())


class InsideRun(logging.Filter):
    """Passes only records made inside a flow or task run (the API handler has nothing to file others under)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _selfmodel_logs_to_prefect() -> None:
    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS, PREFECT_LOGGING_LEVEL

    logger = logging.getLogger("selfmodel")
    if "selfmodel" in PREFECT_LOGGING_EXTRA_LOGGERS.value() or any(
            isinstance(handler, APILogHandler) for handler in logger.handlers):
        return  # Prefect did it (the variable is set), or this ran already
    handler = APILogHandler()
    handler.addFilter(InsideRun())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:  # as Prefect's `prefect.extra` logger: PREFECT_LOGGING_LEVEL (INFO)
        logger.setLevel(PREFECT_LOGGING_LEVEL.value())


watch_temporary_server()
_log_outcomes_without_traceback()
_selfmodel_logs_to_prefect()
