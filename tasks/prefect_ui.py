"""What the Prefect UI and its automations see of a run, beside logs and table artifacts: progress artifacts
for long steps, link artifacts to the reports, and events an automation can act on.

The domain code stays Prefect-free: it takes a plain progress callback (what, done, total), and
`progress_artifact` makes one that moves a Prefect progress artifact.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

# Events (`prefect.events.emit_event`): an automation's trigger matches these names and resources.
EVAL_REGRESSED = "selfmodel.eval.regressed"
EVAL_FAILED_BAR = "selfmodel.eval.failed-bar"
SNAPSHOT_REFUSED = "selfmodel.snapshot.refused"

# At most one progress update per this many seconds (each is an API call), besides the first and the last.
PROGRESS_UPDATE_SECONDS = 1.0

Progress = Callable[[str, int, int], None]


@contextmanager
def progress_artifact(description: str) -> Iterator[Progress]:
    """A progress artifact of the current run, 0 -> 100 %, and the callback that moves it.

    The callback takes (what, done, total) as the domain code reports it; the artifact shows done/total of
    the latest report, at most one update a second, and 100 % when the block ends without an error.
    """
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    artifact_id = create_progress_artifact(progress=0.0, description=description)
    last_sent = [0.0, time.monotonic()]  # percent, when

    def report(what: str, done: int, total: int) -> None:
        percent = round(100.0 * min(done, total) / total, 1) if total > 0 else 0.0
        now = time.monotonic()
        if percent != last_sent[0] and (now - last_sent[1] >= PROGRESS_UPDATE_SECONDS or percent >= 100.0):
            update_progress_artifact(artifact_id=artifact_id, progress=percent, description=f"{description}: {what}")
            last_sent[:] = [percent, now]

    yield report
    if last_sent[0] < 100.0:
        update_progress_artifact(artifact_id=artifact_id, progress=100.0, description=description)


def link_artifact(key: str, path: str | Path | None, text: str, description: str) -> None:
    """A link artifact to a file the run wrote (a file:// URL: open it on the machine that ran the flow)."""
    from prefect.artifacts import create_link_artifact

    if not path:
        return
    create_link_artifact(key=key, link=Path(path).resolve().as_uri(), link_text=text, description=description)


def eval_events(runs: list[Mapping[str, Any]]) -> list[str]:
    """Emit an event per eval suite that regressed or failed its bar; return the event names emitted."""
    from prefect.events import emit_event

    emitted = []
    for suite_run in runs:
        if suite_run.get("skipped"):
            continue
        failed = sorted(metric for metric, check in (suite_run.get("bar") or {}).items()
                        if check.get("passed") is False)
        regressions = suite_run.get("regressions") or []
        for name, present in ((EVAL_REGRESSED, regressions), (EVAL_FAILED_BAR, failed)):
            if not present:
                continue
            emit_event(
                event=name,
                resource={"prefect.resource.id": f"selfmodel.eval-suite.{suite_run['suite']}",
                          "prefect.resource.name": suite_run["suite"]},
                payload={"run_id": suite_run.get("run_id"), "suite": suite_run["suite"],
                         "regressions": [{key: entry.get(key) for key in ("metric", "before", "after", "p_value")}
                                         for entry in regressions],
                         "failed_metrics": failed},
            )
            emitted.append(name)
    return emitted


def snapshot_refused_event(result: Mapping[str, Any]) -> None:
    """Emit the event of a snapshot its audit refused (the current one stays in service)."""
    from prefect.events import emit_event

    emit_event(
        event=SNAPSHOT_REFUSED,
        resource={"prefect.resource.id": f"selfmodel.snapshot.{result.get('version')}",
                  "prefect.resource.name": str(result.get("version"))},
        payload={"version": result.get("version"), "reason": result.get("reason"),
                 "current": result.get("current"),
                 "failed_checks": [check["name"] for check in result.get("checks") or [] if not check["passed"]]},
    )
