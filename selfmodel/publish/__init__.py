"""Write-audit-publish of belief snapshots, rollback, and the list of snapshots.

`publish` writes the beliefs in force (decayed to the data as-of of the last refresh) into a staging
folder, audits them, and only then publishes: a rename makes the version folder appear complete, and an
atomic switch of `CURRENT` puts it in service. The audit passes only when

* the latest validation of each expectation suite and asset has no blocking failure (`expectation_runs`),
* the latest run of each eval suite passed its bar (`eval_runs`) and ran after the last refresh,
* the staged snapshot itself holds up: the online reader opens it with its checksums verified, its row
  and user counts equal the warehouse's, and every confidence lies in [0, 1).

Missing eval or expectation runs fail the audit (`snapshots.require_eval`). A failed audit leaves
`CURRENT` where it was, is recorded (table `snapshot_audits` and the folder's `log.jsonl`), and calls the
caller's `on_audit_failure(reason)`. No Prefect here: flows/publish.py wraps this package.

This module runs it (publish, publish_table, rollback); `audit` decides, `folder` writes and switches.

Crash safety: every file is fsynced before the rename that makes it visible, and the folder after it;
killed at any point, `CURRENT` still names a complete, verified snapshot, and the next run cleans up.
"""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from selfmodel.beliefs import parameters as beliefs_parameters
from selfmodel.clock import Clock, SystemClock
from selfmodel.publish.audit import Audit, Check, _audit_quality, _audit_snapshot
from selfmodel.publish.folder import (
    PublishError, _append_log, _clean_leftovers, _folder_lock, _rewritten_as, _sha, _switch_current, _version,
    _versions, forget_in_snapshots, list_snapshots, promote, read_log, stage_snapshot,
)
from selfmodel.redact import scrub
from selfmodel.settings import Settings
from selfmodel.version import code_version
from warehouse.db import WarehouseBusyError, connect, load_sql, run, run_dicts
from warehouse.snapshot_format import (
    BELIEFS_FILE, BELIEFS_SCHEMA, VERSION_PATTERN, SnapshotError, read_current, verify_snapshot,
)

__all__ = ["Audit", "AuditFailed", "AuditFailureHook", "Check", "PublishError", "PublishResult", "forget_in_snapshots",
           "list_snapshots", "promote", "publish", "publish_table", "read_log", "restore_calibration", "rollback",
           "stage_snapshot"]

log = logging.getLogger("selfmodel.publish")


class AuditFailureHook(Protocol):
    """Called once per failed audit with the reason (one line); wire the owners' alert channel here."""

    def __call__(self, reason: str) -> None: ...


class AuditFailed(RuntimeError):
    """The snapshot failed its audit; the current snapshot stays in service (the publish flow's failure: an
    outcome the audit recorded, not a crash)."""


@dataclass
class PublishResult:
    published: bool
    version: str | None  # the version published, or the candidate whose audit failed
    reason: str | None
    current: str | None = None  # what CURRENT names afterwards
    content_hash: str | None = None
    data_as_of: datetime | None = None
    refresh_id: str | None = None
    rows: int = 0
    users: int = 0
    audit: Audit = field(default_factory=Audit)
    alert_error: str | None = None  # the on_audit_failure hook raised this

    def to_json(self) -> dict:
        """The `selfmodel publish --json` contract."""
        return {"published": self.published, "version": self.version, "reason": self.reason}


def publish(settings: Settings, *, con: duckdb.DuckDBPyConnection | None = None, clock: Clock | None = None,
            on_audit_failure: AuditFailureHook | Callable[[str], None] | None = None,
            fresh_suites: list[str] | None = None) -> PublishResult:
    """Write the current beliefs as a snapshot, audit it, and publish it only if the audit passes.

    `fresh_suites`: the eval suites that must have run after the last refresh (default: every suite). A
    nightly run of only some suites (`--suite`) asks only those to be fresh; every suite's latest run must
    still have passed its bar.
    """
    from selfmodel.analyst import open_for_writing

    clock = clock or SystemClock()
    # `con`: the caller's connection (it refreshes the analyst copy when done); else one of our own.
    with nullcontext(con) if con is not None else open_for_writing(settings, clock=clock) as con:
        result = _publish(con, settings, clock, fresh_suites)
        _record(con, settings, result, clock)
    if not result.published:
        log.info("snapshot %s not published: %s", result.version, result.reason)
        if on_audit_failure is not None:
            try:
                on_audit_failure(result.reason or "audit failed")
            except Exception as exc:  # the failure is recorded already; say the alert did not go out
                # One line, no traceback: a configuration problem (an unset webhook variable) is not a crash.
                result.alert_error = scrub(f"{type(exc).__name__}: {exc}")
                log.error("the nightly owners could not be told that the snapshot was refused: %s", result.alert_error)
    else:
        log.info("published snapshot %s (%d beliefs of %d users)", result.version, result.rows, result.users)
    return result


def _publish(con: duckdb.DuckDBPyConnection, settings: Settings, clock: Clock,
             fresh_suites: list[str] | None = None) -> PublishResult:
    folder = settings.snapshots_path
    folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder):
        _clean_leftovers(folder)
    created = clock.now()
    audit = Audit()
    refresh = run_dicts(con, "last_refresh_run")
    if not refresh:
        audit.add("beliefs", False, "no beliefs yet: run `selfmodel refresh` first")
        version = _version(created, _sha({"empty": True}))
        with _folder_lock(folder):
            _append_log(folder, {"at": created.isoformat(), "action": "audit_failed", "version": version,
                                 "reason": audit.reason})
        return PublishResult(False, version, audit.reason, read_current(folder), audit=audit)
    refresh = refresh[0]
    table, counts = _beliefs_table(con, settings)
    parameters = beliefs_parameters.of_last_refresh(con)
    staged, manifest = stage_snapshot(
        folder, table, data_as_of=refresh["as_of"], created=created,
        serving_threshold=settings.beliefs.serving_threshold, min_confidence=settings.snapshots.min_confidence,
        extra={
            "refresh": {"refresh_id": refresh["refresh_id"], "as_of": refresh["as_of"].isoformat(),
                        "ended_at": refresh["ended_at"].isoformat()},
            # What confidence was computed with: the refresh's parameter set and the calibration it came from
            # (a rollback to this snapshot puts that calibration back in force).
            "key_policies": ({family: beliefs_parameters.policy_to_json(policy)
                              for family, policy in sorted(parameters.policies.items())} if parameters else
                             {name: policy.model_dump() for name, policy in settings.beliefs.keys.items()}),
            "parameter_set": parameters.id if parameters else None,
            "calibration_id": parameters.calibration_id if parameters else None,
            "code_version": code_version(), "config_hash": settings.config_hash(),
        },
    )
    _audit_snapshot(audit, staged, table, counts, settings.snapshots.min_confidence)
    _audit_quality(audit, con, settings, refresh, fresh_suites)
    result = PublishResult(audit.passed, manifest["version"], audit.reason, content_hash=manifest["content_hash"],
                           data_as_of=refresh["as_of"], refresh_id=refresh["refresh_id"],
                           rows=manifest["rows"], users=manifest["users"], audit=audit)
    if not audit.passed:
        with _folder_lock(folder):
            _clean_leftovers(folder)
            _append_log(folder, {"at": created.isoformat(), "action": "audit_failed", "version": result.version,
                                 "reason": audit.reason})
        result.current = read_current(folder)
        return result
    promote(folder, staged, manifest, audit.to_json(), keep=settings.snapshots.keep)
    result.current = manifest["version"]
    return result


def publish_table(folder: Path, table: pa.Table, *, data_as_of: datetime, created: datetime,
                  serving_threshold: float = 0.6, min_confidence: float = 0.0, keep: int = 7) -> str:
    """Publish beliefs given as an Arrow table with only the snapshot's own checks, no warehouse audit.

    For benchmarks, tests and tools that build snapshots outside the warehouse; the nightly path is
    `publish`. Raises PublishError when a check fails. Returns the version published.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _folder_lock(folder):
        _clean_leftovers(folder)
    staged, manifest = stage_snapshot(folder, table, data_as_of=data_as_of, created=created,
                                      serving_threshold=serving_threshold, min_confidence=min_confidence)
    audit = Audit()
    _audit_snapshot(audit, staged, table.cast(BELIEFS_SCHEMA), {"in_force": table.num_rows, "unknown_family": 0},
                    min_confidence)
    if not audit.passed:
        with _folder_lock(folder):
            _clean_leftovers(folder)
        raise PublishError(f"snapshot not published: {audit.reason}")
    promote(folder, staged, manifest, audit.to_json(), keep)
    return manifest["version"]


def _beliefs_table(con, settings: Settings) -> tuple[pa.Table, dict]:
    """The beliefs in force as the `beliefs` view computes them (the last refresh's as-of and parameters)."""
    relation = con.sql(load_sql("snapshot_beliefs"), params={"min_confidence": settings.snapshots.min_confidence})
    table = relation.to_arrow_table()
    parameters = beliefs_parameters.of_last_refresh(con) or beliefs_parameters.configured(settings)
    with beliefs_parameters.registered(con, parameters):
        [counts] = run_dicts(con, "snapshot_belief_counts")
    return table.cast(BELIEFS_SCHEMA), counts


def _record(con, settings: Settings, result: PublishResult, clock: Clock) -> None:
    run(con, "insert_snapshot_audit", {
        "audit_id": f"{result.version}-{uuid.uuid4().hex[:8]}", "attempted_at": clock.now(),
        "version": result.version, "content_hash": result.content_hash, "data_as_of": result.data_as_of,
        "refresh_id": result.refresh_id, "rows": result.rows, "users": result.users, "passed": result.audit.passed,
        "published": result.published, "reason": result.reason,
        "checks": json.dumps([asdict(check) for check in result.audit.checks]),
        "code_version": code_version(), "config_hash": settings.config_hash(),
    })


def rollback(settings: Settings, version: str, clock: Clock | None = None) -> str | None:
    """Put an earlier published version back in service; return the version it replaces."""
    clock = clock or SystemClock()
    folder = settings.snapshots_path
    if not VERSION_PATTERN.fullmatch(version):
        raise PublishError(f"{version!r} is not a snapshot version (see `selfmodel snapshots`)")
    if not (folder / version).is_dir():
        rewritten = _rewritten_as(folder, version)
        if rewritten is not None:
            raise PublishError(f"snapshot {version} was rewritten without a forgotten user (selfmodel forget) as "
                               f"{rewritten}; roll back to that one")
        known = ", ".join(_versions(folder)) if folder.is_dir() else ""
        raise PublishError(f"no snapshot {version} in {folder} (kept: {known or 'none'})")
    try:
        manifest = verify_snapshot(folder / version)
    except SnapshotError as exc:
        raise PublishError(f"snapshot {version} cannot be served: {exc}") from None
    if not manifest.get("audit", {}).get("passed"):
        raise PublishError(f"snapshot {version} did not pass its audit")
    forgotten = _forgotten_users_in(settings, folder / version, manifest)
    if forgotten:
        raise PublishError(f"snapshot {version} holds {forgotten} user(s) forgotten (selfmodel forget) after it was "
                           "published: it must not be served. Run `selfmodel forget` for them again (it rewrites "
                           "the snapshots that still hold them), or roll back to another version")
    with _folder_lock(folder):
        previous = read_current(folder)
        _switch_current(folder, version)
        _append_log(folder, {"at": clock.now().isoformat(), "action": "rolled_back", "version": version,
                             "previous": previous})
    log.info("rolled back from %s to %s", previous, version)
    try:
        restore_calibration(settings, version, manifest, clock)
    except WarehouseBusyError as busy:
        raise PublishError(f"snapshot {version} is in service, but the calibration its beliefs were computed with "
                           f"could not be put back in force ({busy}); run the same rollback again when the "
                           "warehouse is free") from None
    return previous


def restore_calibration(settings: Settings, version: str, manifest: dict, clock: Clock) -> str | None:
    """Put the calibration the snapshot's beliefs were computed with back in force, so the next refresh
    re-folds with it rather than publish again what was rolled back from. Snapshots published before
    calibrations were recorded say nothing and change nothing. Returns what was put in force, or None."""
    if "calibration_id" not in manifest or not settings.warehouse_path.exists():
        return None
    wanted = manifest["calibration_id"]
    con = connect(settings.warehouse_path, wait_seconds=settings.nightly.lock_wait_seconds)
    try:
        in_force, _ = beliefs_parameters.adopted_calibration(con)
        if in_force == wanted:
            return None
        # A calibration this warehouse never recorded (a snapshot kept from a warehouse since rebuilt) has no
        # parameters to fold with: put in force, it would stop every refresh.
        if wanted is not None and not run(con, "calibration_run_recorded", {"calibration_id": wanted})[0][0]:
            raise PublishError(
                f"snapshot {version} is in service, but the calibration its beliefs were computed with, {wanted}, "
                f"is not recorded in this warehouse (calibration_runs): the calibration in force stays "
                f"{in_force or 'the config values'}, and the next refresh folds with it")
        beliefs_parameters.adopt(con, wanted, clock.now(), f"rollback to {version}")
    finally:
        con.close()
    log.info("calibration in force: %s (that of snapshot %s; was %s)", wanted or "the config's values", version,
             in_force or "the config's values")
    return wanted or "config"


def _forgotten_users_in(settings: Settings, snapshot_dir: Path, manifest: dict) -> int:
    """How many users of the snapshot were forgotten after it was created (a forget that stopped before it
    rewrote the snapshots). Read from the warehouse's `deletions`, or its analyst copy while a flow writes;
    with neither (snapshots kept apart from the warehouse) nothing can be checked and 0 is returned."""
    deleted_after = {}
    for candidate in (settings.warehouse_path, settings.analyst_copy_path):
        if candidate is None or not candidate.exists():
            continue
        try:
            con = connect(candidate, read_only=True)
        except WarehouseBusyError:
            continue
        try:
            deleted_after = dict(run(con, "forgotten_users"))
        finally:
            con.close()
        break
    if not deleted_after:
        return 0
    created = datetime.fromisoformat(manifest["created_at"])
    users = pq.read_table(snapshot_dir / BELIEFS_FILE, columns=["user_id"]).column("user_id").unique().to_pylist()
    return sum(1 for user in users
               if (deleted := deleted_after.get(hashlib.sha256(user.encode()).hexdigest())) and deleted >= created)
