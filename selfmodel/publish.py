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
caller's `on_audit_failure(reason)`. No Prefect here: flows/publish.py wraps this module.

Crash safety: every file is fsynced before the rename that makes it visible, and the folder after it;
killed at any point, `CURRENT` still names a complete, verified snapshot, and the next run cleans up.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Protocol

import blake3
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from selfmodel.beliefs import parameters as beliefs_parameters
from selfmodel.clock import Clock, SystemClock
from selfmodel.redact import scrub
from selfmodel.settings import Settings
from selfmodel.version import code_version
from warehouse.db import WarehouseBusyError, connect, load_sql, run, run_dicts
from warehouse.online import open_snapshot
from warehouse.snapshot_format import (
    BELIEFS_FILE, BELIEFS_SCHEMA, CURRENT_FILE, MANIFEST_FILE, SCHEMA_VERSION, SERVED_FILE, SERVED_SCHEMA,
    VERSION_PATTERN, SnapshotError, read_current, read_manifest, user_bucket, verify_snapshot,
)

log = logging.getLogger("selfmodel.publish")

# About 1-3 MB of zstd Parquet per group: a point lookup by user_id reads one group (the file is
# sorted by user, so each group's min/max statistics bound a narrow range of ids).
ROW_GROUP_ROWS = 128 * 1024
STAGING_DIR = ".staging"
TRASH_DIR = ".trash"
LOCK_FILE = ".lock"
LOG_FILE = "log.jsonl"


class AuditFailureHook(Protocol):
    """Called once per failed audit with the reason (one line); wire the owners' alert channel here."""

    def __call__(self, reason: str) -> None: ...


class AuditFailed(RuntimeError):
    """The snapshot failed its audit; the current snapshot stays in service (the publish flow's failure: an
    outcome the audit recorded, not a crash)."""


class PublishError(RuntimeError):
    """A request about snapshots that cannot be done (unknown version, nothing to roll back to)."""


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Audit:
    checks: list[Check] = field(default_factory=list)
    eval_runs: list[dict] = field(default_factory=list)
    expectations: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def reason(self) -> str | None:
        failed = [f"{check.name}: {check.detail}" for check in self.checks if not check.passed]
        return "; ".join(failed) if failed else None

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    def to_json(self) -> dict:
        return {"passed": self.passed, "checks": [asdict(check) for check in self.checks],
                "eval": self.eval_runs, "expectations": self.expectations}


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


# --- publish ---------------------------------------------------------------------------------------------

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


def stage_snapshot(folder: Path, table: pa.Table, *, data_as_of: datetime, created: datetime,
                   serving_threshold: float, min_confidence: float = 0.0,
                   extra: dict | None = None) -> tuple[Path, dict]:
    """Write `table` (BELIEFS_SCHEMA, sorted by user, most confident first) and a draft manifest into
    `<folder>/.staging/<version>`, every file fsynced; return the staged folder and the manifest."""
    table = table.cast(BELIEFS_SCHEMA)
    data = _parquet_bytes(table)
    content = {
        "schema_version": SCHEMA_VERSION,
        "data_as_of": data_as_of.isoformat(),
        "serving_threshold": serving_threshold,
        "min_confidence": min_confidence,
        "rows": table.num_rows,
        "users": _distinct_users(table),
        "files": {BELIEFS_FILE: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                 "rows": table.num_rows}},
    }
    # What the snapshot holds, not when it was made: identical runs give identical content hashes.
    content_hash = _sha(content)
    version = _version(created, content_hash)
    staged = Path(folder) / STAGING_DIR / version
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    _write_synced(staged / BELIEFS_FILE, data)
    # beliefs.arrow is derived from the same table (so it adds nothing to what the snapshot holds): it is
    # checksummed in a section of its own, outside the content hash, which stays that of the beliefs alone.
    served = _write_served(staged / SERVED_FILE, table)
    manifest = {"version": version, "content_hash": content_hash, "created_at": created.isoformat(), **content,
                "served_files": {SERVED_FILE: served}, **(extra or {})}
    _write_synced(staged / MANIFEST_FILE, _manifest_bytes(manifest))
    _fsync_dir(staged)
    _fsync_dir(staged.parent)
    return staged, manifest


def promote(folder: Path, staged: Path, manifest: dict, audit: dict, keep: int) -> str | None:
    """Publish a staged snapshot that passed its audit: final manifest, rename into place, switch CURRENT,
    log, prune. Returns the version it replaces."""
    manifest = {**manifest, "audit": audit}
    _atomic_write(staged / MANIFEST_FILE, _manifest_bytes(manifest))
    version = manifest["version"]
    with _folder_lock(folder):
        previous = read_current(folder)
        target = folder / version
        if target.exists():
            # Same second and same content hash: the identical snapshot is already there.
            verify_snapshot(target)
            shutil.rmtree(staged)
        else:
            os.rename(staged, target)  # the version folder appears complete, or not at all
            _fsync_dir(folder)
        _switch_current(folder, version)
        _append_log(folder, {"at": manifest["created_at"], "action": "published", "version": version,
                             "previous": previous})
        _prune(folder, keep, version)
        _clean_leftovers(folder)
    return previous


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


def _distinct_users(table: pa.Table) -> int:
    return pc.count_distinct(table.column("user_id")).as_py() if table.num_rows else 0


def _parquet_bytes(table: pa.Table) -> bytes:
    """The snapshot file: sorted as given, zstd, dictionary-coded strings and counts (the reader compares
    user codes, not strings); the same table gives the same bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=ROW_GROUP_ROWS, write_statistics=True,
                   use_dictionary=["user_id", "key", "value", "evidence_count"],
                   # Split doubles into byte planes: zstd then packs them tighter and they decode ~2x faster.
                   column_encoding={"confidence": "BYTE_STREAM_SPLIT", "decayed_evidence": "BYTE_STREAM_SPLIT"})
    return sink.getvalue().to_pybytes()


def _write_served(path: Path, table: pa.Table) -> dict:
    """Write beliefs.arrow (warehouse.snapshot_format.SERVED_SCHEMA) of a snapshot table sorted by user, fsynced;
    return its manifest entry. Written straight to the file: no second copy of it in memory."""
    batch = _served_batch(table)
    with open(path, "wb") as handle:
        with pa.ipc.new_file(handle, SERVED_SCHEMA, options=pa.ipc.IpcWriteOptions(compression=None)) as writer:
            writer.write_batch(batch)
        handle.flush()
        os.fsync(handle.fileno())
        size = handle.tell()
    digest = blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path).hexdigest()
    return {"blake3": digest, "bytes": size, "rows": table.num_rows}


def _served_batch(table: pa.Table) -> pa.RecordBatch:
    """The arrays the online reader serves from, its user index included (warehouse.snapshot_format.SERVED_SCHEMA),
    of a snapshot table sorted by user; the same table gives the same arrays, so the same file."""
    users = table.column("user_id").combine_chunks()
    rows = len(users)
    if rows:
        changed = pc.not_equal(users.slice(1), users.slice(0, rows - 1))
        firsts = pc.indices_nonzero(pa.concat_arrays([pa.array([True]), changed]))
    else:
        firsts = pa.array([], pa.uint64())
    row_starts = np.append(firsts.to_numpy().astype(np.int64), np.int64(rows))
    user_ids = users.take(firsts).cast(pa.large_string())
    buckets = 1 << max(0, len(user_ids) - 1).bit_length()  # a power of two >= users: ~1 user per bucket
    bucket = np.fromiter((user_bucket(user, buckets) for user in user_ids.to_pylist()), dtype=np.int64,
                         count=len(user_ids))
    order = np.argsort(bucket, kind="stable")  # ordinals: users grouped by bucket, sorted within one
    bucket_starts = np.concatenate([[0], np.cumsum(np.bincount(bucket, minlength=buckets))]).astype(np.int64)
    user_rows = np.column_stack([row_starts[:-1][order], row_starts[1:][order]]).reshape(-1)
    keys = pc.dictionary_encode(table.column("key").combine_chunks())
    values = pc.dictionary_encode(table.column("value").combine_chunks())
    columns = {
        "bucket_starts": pa.array(bucket_starts), "user_ids": user_ids.take(pa.array(order)),
        "user_rows": pa.array(user_rows, pa.int64()), "key_codes": keys.indices.cast(pa.int32()),
        "value_codes": values.indices.cast(pa.int32()),
        "confidence": table.column("confidence").combine_chunks(),
        "evidence_count": table.column("evidence_count").combine_chunks(),
        "last_evidence_at": table.column("last_evidence_at").combine_chunks().view(pa.int64()),
        "key_names": keys.dictionary.cast(pa.large_string()),
        "value_names": values.dictionary.cast(pa.large_string()),
    }
    return pa.record_batch(
        [pa.LargeListArray.from_arrays(pa.array([0, len(columns[field.name])], pa.int64()),
                                       columns[field.name].cast(field.type.value_type))
         for field in SERVED_SCHEMA], schema=SERVED_SCHEMA)


def _served_differs(path: Path, table: pa.Table) -> str | None:
    """Which served column of beliefs.arrow, read back as the reader reads it, differs from `table`; None
    when every row matches (user, key, value, confidence, evidence count, last evidence time)."""
    served = pa.ipc.open_file(pa.memory_map(str(path))).get_batch(0)
    array = {name: served.column(name).values for name in served.schema.names}
    user_rows = array["user_rows"].to_numpy().reshape(-1, 2)
    by_first = np.argsort(user_rows[:, 0], kind="stable")
    runs = user_rows[by_first]  # each user's rows, in row order: they must tile the rows
    if len(runs) and (runs[0, 0] != 0 or runs[-1, 1] != table.num_rows or (runs[1:, 0] != runs[:-1, 1]).any()
                      or (runs[:, 1] <= runs[:, 0]).any()):
        return "user_rows do not cover each row once"
    owner = np.repeat(by_first, runs[:, 1] - runs[:, 0])
    rebuilt = {
        "user_id": array["user_ids"].take(pa.array(owner)).cast(pa.string()),
        "key": array["key_names"].take(array["key_codes"]).cast(pa.string()),
        "value": array["value_names"].take(array["value_codes"]).cast(pa.string()),
        "confidence": array["confidence"], "evidence_count": array["evidence_count"],
        "last_evidence_at": array["last_evidence_at"].view(pa.timestamp("us", tz="UTC")),
    }
    for name, column in rebuilt.items():
        if not column.equals(table.column(name).combine_chunks()):
            return f"column {name}"
    return None


def _version(created: datetime, content_hash: str) -> str:
    """UTC creation time to the second, then the content hash: ids sort by time and name their content."""
    utc = created.astimezone(timezone.utc) if created.tzinfo else created.replace(tzinfo=timezone.utc)
    return f"{utc:%Y%m%dT%H%M%S}Z-{content_hash[:12]}"


def _sha(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n").encode()


# --- the audit -----------------------------------------------------------------------------------------------

def _audit_snapshot(audit: Audit, staged: Path, table: pa.Table, counts: dict, floor: float) -> None:
    """Checks on the staged files themselves, read back through the online reader."""
    audit.add("beliefs", table.num_rows > 0,
              f"{table.num_rows} beliefs at or above {floor}" if table.num_rows
              else f"no beliefs in force at or above {floor}: the snapshot would make every user a cold start")
    audit.add("key_families", counts["unknown_family"] == 0,
              "every belief's key family is in beliefs.keys" if not counts["unknown_family"]
              else f"{counts['unknown_family']} beliefs have a key family missing from beliefs.keys")
    try:
        loaded = open_snapshot(staged, verify="always")  # checksums, row and user counts against the manifest
    except SnapshotError as exc:
        audit.add("checksums", False, str(exc))
        return
    audit.add("checksums", True, f"{BELIEFS_FILE} and {SERVED_FILE} match their checksums; the online reader opens them")
    differs = _served_differs(staged / SERVED_FILE, table)
    audit.add("served_file", differs is None,
              f"{SERVED_FILE} holds exactly the beliefs of {BELIEFS_FILE}" if differs is None
              else f"{SERVED_FILE} differs from {BELIEFS_FILE}: {differs}")
    expected_users = _distinct_users(table)
    audit.add("row_count", loaded.rows == table.num_rows,
              f"{loaded.rows} rows in the file, {table.num_rows} beliefs selected in the warehouse"
              + ("" if floor == 0 else f" ({counts['in_force']} in force, floor {floor})"))
    audit.add("user_count", loaded.users == expected_users,
              f"{loaded.users} users in the file, {expected_users} in the warehouse")
    if table.num_rows:
        confidence = table.column("confidence")
        bounds = pc.min_max(confidence).as_py()
        nans = pc.sum(pc.is_nan(confidence)).as_py() or 0
        in_range = nans == 0 and bounds["min"] >= 0.0 and bounds["max"] < 1.0
        audit.add("confidence_range", in_range,
                  f"confidences within [{bounds['min']:.4g}, {bounds['max']:.4g}]" + (f", {nans} NaN" if nans else ""))
        least = pc.min(table.column("evidence_count")).as_py()
        audit.add("evidence_counts", least >= 1, f"the fewest observations behind a belief: {least}")
        users, confidence = table.column("user_id"), table.column("confidence")
        previous, following = slice(0, table.num_rows - 1), slice(1, table.num_rows)
        same_user = pc.equal(users[following], users[previous])
        user_order = pc.sum(pc.less(users[following], users[previous])).as_py() or 0
        rising = pc.sum(pc.and_(same_user, pc.greater(confidence[following], confidence[previous]))).as_py() or 0
        audit.add("order", user_order == 0 and rising == 0,
                  "sorted by user_id, each user's beliefs most confident first" if not (user_order or rising)
                  else f"{user_order} rows out of user order, {rising} rows more confident than the one before")


def _audit_quality(audit: Audit, con, settings: Settings, refresh: dict, fresh_suites: list[str] | None = None
                   ) -> None:
    """The blocking expectations and the eval bar, as recorded by the nightly evaluation."""
    require = settings.snapshots.require_eval
    validations = run_dicts(con, "latest_expectation_runs")
    failing = [v for v in validations if v["blocking_failures"]]
    suites = sorted({v["suite"] for v in validations})
    audit.expectations = {
        suite: {
            "assets": sum(1 for v in validations if v["suite"] == suite),
            "blocking_failures": sum(v["blocking_failures"] for v in validations if v["suite"] == suite),
            "warnings": sum(v["warnings"] for v in validations if v["suite"] == suite),
            "last_validated_at": max(v["validated_at"] for v in validations if v["suite"] == suite).isoformat(),
        }
        for suite in suites
    }
    if not validations:
        audit.add("expectations", not require,
                  "no expectation validation recorded" + (": run `selfmodel expectations` first"
                                                          if require else " (snapshots.require_eval is off)"))
    else:
        shown = ", ".join(f"{v['suite']}/{v['asset']} ({v['blocking_failures']})" for v in failing[:5])
        more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
        audit.add("expectations", not failing,
                  f"latest validations of {len(validations)} suite/asset pairs have no blocking failure" if not failing
                  else f"blocking failures in the latest validation of {shown}{more}")

    evals = run_dicts(con, "latest_eval_runs")
    from selfmodel.evals.enrichment import SUITE as ENRICHMENT

    # The enrichment judge runs only when asked for (it needs a paid endpoint): a run of it by hand neither
    # blocks a publish nor goes stale, unless the judge is enabled (then the nightly runs it) or required.
    if not settings.eval.enrichment.enabled and ENRICHMENT not in settings.snapshots.required_eval_suites:
        evals = [e for e in evals if e["suite"] != ENRICHMENT]
    audit.eval_runs = [
        {"suite": e["suite"], "run_id": e["run_id"], "passed": e["passed"], "ended_at": e["ended_at"].isoformat(),
         "data_as_of": e["data_as_of"].isoformat() if e["data_as_of"] else None,
         "metrics": json.loads(e["metrics"]) if isinstance(e["metrics"], str) else e["metrics"]}
        for e in evals
    ]
    missing = sorted(set(settings.snapshots.required_eval_suites) - {e["suite"] for e in evals})
    if not evals:
        audit.add("eval", not require,
                  "no eval run recorded" + (": run `selfmodel eval` first" if require
                                            else " (snapshots.require_eval is off)"))
        return
    failed = [e for e in evals if not e["passed"]]
    audit.add("eval", not failed and not missing,
              "; ".join(filter(None, [
                  ", ".join(f"suite {e['suite']} failed its bar (run {e['run_id']})" for e in failed),
                  f"required eval suite(s) never ran: {', '.join(missing)}" if missing else "",
              ])) or f"latest runs of {len(evals)} eval suite(s) passed their bar")
    if settings.snapshots.require_fresh_eval:
        judged = [e for e in evals if fresh_suites is None or e["suite"] in fresh_suites]
        stale = [e for e in judged if e["ended_at"] < refresh["ended_at"]]
        left_out = sorted({e["suite"] for e in evals} - {e["suite"] for e in judged})
        audit.add("eval_fresh", not stale,
                  (f"every latest eval run{'' if fresh_suites is None else ' of ' + ', '.join(sorted(fresh_suites))} "
                   f"ended after the refresh {refresh['refresh_id']}"
                   + (f" ({', '.join(left_out)} not run this time: judged by their latest run)" if left_out else ""))
                  if not stale
                  else f"beliefs were refreshed at {refresh['ended_at'].isoformat()}, after the latest run of "
                       + ", ".join(e["suite"] for e in stale) + ": run `selfmodel eval` again")


def _record(con, settings: Settings, result: PublishResult, clock: Clock) -> None:
    run(con, "insert_snapshot_audit", {
        "audit_id": f"{result.version}-{uuid.uuid4().hex[:8]}", "attempted_at": clock.now(),
        "version": result.version, "content_hash": result.content_hash, "data_as_of": result.data_as_of,
        "refresh_id": result.refresh_id, "rows": result.rows, "users": result.users, "passed": result.audit.passed,
        "published": result.published, "reason": result.reason,
        "checks": json.dumps([asdict(check) for check in result.audit.checks]),
        "code_version": code_version(), "config_hash": settings.config_hash(),
    })


# --- the folder: CURRENT, log, pruning, rollback, listing ------------------------------------------------------

@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Serialises CURRENT switches, pruning and clean-up between publish and rollback processes."""
    with open(folder / LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _switch_current(folder: Path, version: str) -> None:
    _atomic_write(folder / CURRENT_FILE, (version + "\n").encode("ascii"))


def _atomic_write(path: Path, data: bytes) -> None:
    """Write beside, fsync, rename over, fsync the folder: readers see the old file or the new one."""
    temporary = path.parent / f".{path.name}.tmp-{os.getpid()}"
    _write_synced(temporary, data)
    os.replace(temporary, path)
    _fsync_dir(path.parent)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _append_log(folder: Path, entry: dict) -> None:
    with open(folder / LOG_FILE, "ab") as handle:
        handle.write((json.dumps(entry, default=str) + "\n").encode())
        handle.flush()
        os.fsync(handle.fileno())


def read_log(folder: Path) -> list[dict]:
    """The folder's log of publishes, failed audits and rollbacks (a line cut by a crash is skipped)."""
    try:
        lines = (Path(folder) / LOG_FILE).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _versions(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and VERSION_PATTERN.fullmatch(entry.name))


def _prune(folder: Path, keep: int, current: str) -> None:
    """Keep the newest `keep` versions and the current one; move the rest aside, then delete them."""
    versions = _versions(folder)
    doomed = [v for v in versions[:-keep] if v != current]
    if not doomed:
        return
    trash = folder / TRASH_DIR
    trash.mkdir(exist_ok=True)
    for version in doomed:
        # A rename first, so a crash never leaves a half-deleted folder under a version's name.
        os.rename(folder / version, trash / version)
    _fsync_dir(folder)
    shutil.rmtree(trash, ignore_errors=True)


def _clean_leftovers(folder: Path) -> None:
    """What a killed publish may leave: a staging folder, a temporary CURRENT, a half-emptied trash."""
    for name in (STAGING_DIR, TRASH_DIR):
        shutil.rmtree(folder / name, ignore_errors=True)
    for temporary in folder.glob(f".{CURRENT_FILE}.tmp-*"):
        temporary.unlink(missing_ok=True)


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


# --- forgetting a user in the snapshots already written ---------------------------------------------------------

def forget_in_snapshots(folder: Path, user_id: str, clock: Clock | None = None) -> list[dict]:
    """Rewrite every kept snapshot that holds `user_id` without them; return [{"version", "rewritten_as"}].

    A version folder never changes once published (readers rely on it), so each one holding the user is
    written anew beside it: the same beliefs less the user's, the same creation time, data as-of, audit and
    settings, a new content hash (so a new version name) and a note of the redaction (never the id). Under
    the folder lock it is renamed into place, CURRENT is switched to it if it named the old one, and the old
    folder goes. Killed at any point, every version folder is complete and CURRENT names one of them;
    forgetting again finishes the job (the same rewrite gives the same version name). A rollback to an old
    name is refused with the new one (`log.jsonl` records each rewrite). Nothing else is touched: a snapshot
    that does not hold the user keeps its name and files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    clock = clock or SystemClock()
    changes = []
    with _folder_lock(folder):
        _clean_leftovers(folder)
        for version in _versions(folder):
            rewritten = _rewrite_without(folder, version, user_id, clock.now())
            if rewritten is not None:
                changes.append({"version": version, "rewritten_as": rewritten})
        _clean_leftovers(folder)
    for change in changes:
        log.info("snapshot %s rewritten without a forgotten user as %s", change["version"], change["rewritten_as"])
    return changes


def _rewrite_without(folder: Path, version: str, user_id: str, now: datetime) -> str | None:
    """Called under the folder lock: the new version's name, or None when `version` does not hold the user."""
    old = folder / version
    # The user column alone first: most kept versions are left alone, and need not be verified and decoded.
    try:
        users = pq.read_table(old / BELIEFS_FILE, columns=["user_id"]).column("user_id")
    except (OSError, pa.ArrowException):
        users = None  # unreadable: verify_snapshot below says why
    if users is not None and not pc.any(pc.equal(users, user_id)).as_py():
        return None
    manifest = verify_snapshot(old)  # a damaged snapshot is an error to see, never silently rewritten
    table = pq.read_table(old / BELIEFS_FILE, schema=BELIEFS_SCHEMA)
    held = pc.equal(table.column("user_id"), user_id)
    content_keys = {"version", "content_hash", "created_at", "schema_version", "data_as_of", "serving_threshold",
                    "min_confidence", "rows", "users", "files", "served_files"}
    extra = {key: value for key, value in manifest.items() if key not in content_keys}
    extra["redactions"] = [*manifest.get("redactions", []),
                           {"at": now.isoformat(), "users_removed": 1, "replaces": version}]
    staged, new_manifest = stage_snapshot(
        folder, table.filter(pc.invert(held)), data_as_of=datetime.fromisoformat(manifest["data_as_of"]),
        created=datetime.fromisoformat(manifest["created_at"]), serving_threshold=manifest["serving_threshold"],
        min_confidence=manifest.get("min_confidence", 0.0), extra=extra)
    open_snapshot(staged, verify="always")  # the online reader opens it, checksums verified, before it can be served
    new_version = new_manifest["version"]
    target = folder / new_version
    if target.exists():  # a forget killed after this rename: the same rewrite is there already
        verify_snapshot(target)
        shutil.rmtree(staged)
    else:
        os.rename(staged, target)
        _fsync_dir(folder)
    if read_current(folder) == version:
        _switch_current(folder, new_version)
    _append_log(folder, {"at": now.isoformat(), "action": "redacted", "version": new_version, "replaces": version})
    trash = folder / TRASH_DIR
    trash.mkdir(exist_ok=True)
    os.rename(old, trash / version)  # a rename first: no half-deleted folder under a version's name
    _fsync_dir(folder)
    shutil.rmtree(trash, ignore_errors=True)
    return new_version


def _rewritten_as(folder: Path, version: str) -> str | None:
    """The version a forget rewrote `version` as, following later rewrites; None if it never was."""
    renamed = {entry["replaces"]: entry["version"] for entry in read_log(folder) if entry.get("action") == "redacted"}
    if version not in renamed:
        return None
    seen = {version}
    while version in renamed and renamed[version] not in seen:
        version = renamed[version]
        seen.add(version)
    return version


def list_snapshots(settings: Settings, failures: int = 10) -> dict:
    """{"path", "current", "snapshots": [...newest first], "failed_audits": [...newest first]}."""
    folder = settings.snapshots_path
    if not folder.is_dir():
        return {"path": str(folder), "current": None, "snapshots": [], "failed_audits": []}
    current = read_current(folder)
    snapshots = []
    for version in reversed(_versions(folder)):
        try:
            manifest = read_manifest(folder / version)
        except SnapshotError as exc:
            snapshots.append({"version": version, "current": version == current, "error": str(exc)})
            continue
        audit = manifest.get("audit", {})
        snapshots.append({
            "version": version, "current": version == current, "created_at": manifest.get("created_at"),
            "data_as_of": manifest.get("data_as_of"), "users": manifest.get("users"), "rows": manifest.get("rows"),
            "audit_passed": audit.get("passed"),
            "checks": {check["name"]: check["passed"] for check in audit.get("checks", [])},
            "eval": {run["suite"]: run["passed"] for run in audit.get("eval", [])},
            "content_hash": manifest.get("content_hash"),
        })
    failed = [entry for entry in read_log(folder) if entry.get("action") == "audit_failed"][-failures:]
    return {"path": str(folder), "current": current, "snapshots": snapshots, "failed_audits": failed[::-1]}
