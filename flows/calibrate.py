"""The `calibrate` flow: fit the belief model to the warehouse's history, with the per-family table as an
artifact (a nightly step when calibration.nightly is on)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from selfmodel.lock import run_writer_lock
from selfmodel.settings import find_config_path, load_settings
from tasks.calibrate import calibrate_task, refold_task


@flow(name="calibrate")
def calibrate(config_path: str | None = None, as_of: datetime | None = None, dry_run: bool = False,
              refold: bool = False) -> dict:
    """Fit half-lives, priors, evidence weights, base rates and calibration maps per key family; adopt per
    family only what lowers validation log loss. The next refresh re-folds with it; with `refold` (the
    nightly run) it is re-folded now, at the as-of of the beliefs in force."""
    config_path = str(Path(find_config_path(config_path)).resolve())
    settings = load_settings(config_path)
    with run_writer_lock(settings, "calibrate flow run"):
        report = calibrate_task(config_path, as_of, dry_run)
        if refold and report["adopted"]:
            report["refresh"] = refold_task(config_path)
    create_table_artifact(
        key="calibration",
        table=[{"family": f["family"], "status": f["status"], "judged_train": f["judged_train"],
                "judged_validation": f["judged_validation"],
                "validation_log_loss_before": f["validation_log_loss_before"],
                "validation_log_loss_after": f["validation_log_loss_after"],
                "validation_ece_before": f["validation_ece_before"],
                "validation_ece_after": f["validation_ece_after"]} for f in report["families"]],
        description=(report["reason"] or f"Calibration {report['calibration_id'] or '(dry run)'}: "
                     + ("adopted" if report["adopted"] else "not adopted")),
    )
    return report
