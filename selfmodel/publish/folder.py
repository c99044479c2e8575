"""The snapshot folder: staging a snapshot's files (beliefs.parquet, beliefs.arrow, manifest.json), promoting
it (a rename, then an atomic switch of CURRENT), the folder's log, pruning, listing, and rewriting kept
snapshots without a forgotten user. Every file is fsynced before the rename that makes it visible."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from selfmodel.clock import Clock, SystemClock
from selfmodel.settings import Settings
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


class PublishError(RuntimeError):
    """A request about snapshots that cannot be done (unknown version, nothing to roll back to)."""


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
