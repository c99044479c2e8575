"""Serve published belief snapshots in-process, in microseconds: `from warehouse.online import BeliefStore`.

This module is what an online service imports, so it depends on pyarrow, pydantic and the standard
library only (no duckdb, prefect or great_expectations; a test checks it).

Snapshot layout (written by selfmodel.publish, read here)::

    <snapshots>/CURRENT                     the version in service: one line, switched by atomic rename
    <snapshots>/<version>/beliefs.parquet   beliefs in force, sorted by user_id, most confident first
    <snapshots>/<version>/beliefs.arrow     the same beliefs laid out to be mapped, with a user index
    <snapshots>/<version>/manifest.json     version, data as-of, counts, checksum of each file, audit, ...

A version folder is complete before CURRENT can name it and never changes afterwards, so a reader that
follows CURRENT never sees a partial snapshot. `BeliefStore` maps beliefs.arrow (nothing decoded: the
pages are the page cache's, shared by every process serving the snapshot) once every file the manifest
lists is known to match its checksum (`_map_verified`: hashed, or hashed before by this user with the
files unchanged since), and swaps a new snapshot in as one object: every `get` / `enrich` call reads
exactly one snapshot. A snapshot without beliefs.arrow (published before it existed) is decoded from
beliefs.parquet into memory instead.

Enrichment format (stable; the online service may rely on it)::

    About the user (from past interactions):
    - role: software engineer
    - expertise: expert
    - expertise by topic: expert in qiskit, quantum-gate; novice in qudit
    - interested in: quantum-algorithms, qiskit
    - prefers answers: concise
    - writes with: math, code
    - language: en
    - has said: i have two dogs; my favorite band is queen

    <the query, unchanged>

Only beliefs at or above `min_confidence` (default: the snapshot's serving threshold) are used, at most
`max_beliefs` of them, the most confident first; lines follow the fixed order above and only appear
when they have a value. Values appear as stored, on one line: line breaks and control characters
become spaces and a value longer than 80 characters is cut (…), so a user's own words cannot add lines
to the preamble. `enriched_query` always ends with the original query; a user with no usable belief
(cold start, or all below the threshold) gets the query back unchanged.

Operating it: open once at start-up and share the store between threads. A 1 M-user snapshot (17 M
beliefs) maps in milliseconds once verified (hashing its ~0.9 GB of files the first time takes ~1-2 s
on 2 cores); its ~0.6 GB of mapped pages are shared by every process that serves it. A reload maps the
new snapshot in the watcher thread, and calls keep being served meanwhile.
A snapshot that fails verification is never served: `open` raises SnapshotError, a reload keeps the
old snapshot and sets `last_error`. For steady tail latency in a long-running service, `gc.freeze()`
after start-up keeps Python's full collections from walking the start-up objects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, field_serializer

from warehouse.snapshot_format import (  # noqa: F401  (the contract, also offered to readers from here)
    BELIEFS_FILE, BELIEFS_SCHEMA, CURRENT_FILE, MANIFEST_FILE, SCHEMA_VERSION, SERVED_FILE, SERVED_FORMAT,
    SERVED_SCHEMA, VERSION_PATTERN, SnapshotError, check_digest, digest_algorithm, digest_mismatch, listed_files,
    read_current, read_manifest, read_verified, user_bucket, verify_snapshot,
)

log = logging.getLogger("selfmodel.online")

_SERVED_COLUMNS = ["user_id", "key", "value", "confidence", "evidence_count", "last_evidence_at"]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Belief(BaseModel):
    """One belief about a user at the snapshot's data as-of."""

    model_config = ConfigDict(frozen=True)

    key: str  # e.g. role, topic, expertise@qiskit, fact
    value: str
    confidence: float  # in [0, 1), decayed to the snapshot's data as-of
    evidence_count: int
    last_evidence_at: datetime


class SelfModel(BaseModel):
    """What one snapshot says about one user: beliefs, most confident first (empty for a cold start).

    `beliefs` is a read-only sequence of `Belief`; `BeliefStore.get` hands out a view over the
    snapshot's arrays that builds a `Belief` when it is read, so a lookup costs the same for a user
    with three beliefs or three hundred.
    """

    model_config = ConfigDict(frozen=True)

    user_id: str
    snapshot_version: str | None
    as_of: datetime | None  # the snapshot's data as-of
    cold_start: bool  # the snapshot holds nothing about this user
    beliefs: Sequence[Belief]

    @field_serializer("beliefs")
    def _beliefs_as_list(self, beliefs: Sequence[Belief], _info) -> list[Belief]:
        return list(beliefs)

    def enrichable(self, min_confidence: float) -> list[Belief]:
        return [belief for belief in self.beliefs if belief.confidence >= min_confidence]


class Enrichment(BaseModel):
    """An enriched query and exactly what went into it, for the audit trail."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    query: str
    enriched_query: str
    beliefs_used: list[Belief]
    snapshot_version: str | None
    min_confidence: float


def _fast(cls: type[BaseModel], fields: frozenset[str], values: dict) -> Any:
    """A model instance from values already known to be valid (they come from a verified snapshot).

    Equivalent to `cls.model_construct(**values)` for complete values, at a fraction of its cost (the
    hot paths below inline the same four steps).
    """
    instance = _new(cls)
    _set_dict(instance, values)
    _set_fields(instance, fields)
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


_new = object.__new__
# A pydantic model keeps its state in four slots; setting them through their descriptors skips
# object.__setattr__'s attribute lookup (~0.2 us less per model built on the hot paths).
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_BELIEF_FIELDS = frozenset(Belief.model_fields)
_MODEL_FIELDS = frozenset(SelfModel.model_fields)
_ENRICHMENT_FIELDS = frozenset(Enrichment.model_fields)


# --- verifying once per file ----------------------------------------------------------------------------

VERIFIED_DIR_ENV = "SELFMODEL_VERIFIED_DIR"


def _marks_folder() -> Path | None:
    """Where this user records the snapshot files it has verified: $SELFMODEL_VERIFIED_DIR, or
    <tmp>/selfmodel-verified-<uid>. None (so: verify every time) unless only this user can write there."""
    folder = Path(os.environ.get(VERIFIED_DIR_ENV) or Path(tempfile.gettempdir()) / f"selfmodel-verified-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        stat = folder.stat()
    except OSError:
        return None
    if stat.st_uid != os.getuid() or stat.st_mode & 0o022:
        return None  # another user could write a mark for a file they damaged
    return folder


def _mark(identities: list[tuple]) -> str:
    """The name of the mark that says these exact files were hashed and matched: per file its device, inode,
    size, modification and change times (any write changes them) and the digest the manifest expects."""
    return hashlib.sha256(json.dumps(identities).encode()).hexdigest()


_MARK_DAYS = 30  # a mark older than this is removed when a new one is left (snapshots are kept ~a week)


def _leave_mark(marks: Path, mark: str) -> None:
    try:
        (marks / mark).touch()
        cutoff = time.time() - _MARK_DAYS * 86400
        for old in marks.iterdir():
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # at worst the next open hashes again: slower, never less safe


def _identity(name: str, stat: os.stat_result, expected: dict) -> tuple:
    return (name, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
            expected[digest_algorithm(expected)])


def _map_verified(snapshot_dir: Path, manifest: dict, verify: str) -> pa.RecordBatch:
    """beliefs.arrow, memory-mapped, once every file the manifest lists is known to match its checksum.

    With verify="always" every file is hashed (blake3 for beliefs.arrow, sha256 for the rest, at once).
    With "once" (the default) the hashing is skipped when this user already hashed these very files: a
    mark records each file's identity (device, inode, size, mtime and ctime, which any write through the
    file system changes) with the digest the manifest expects, so a changed file or manifest is hashed
    again. The publisher leaves a mark when its audit verifies the staged snapshot (the rename into place
    keeps every identity), so on the publishing machine even the first open skips the hashing.
    """
    name = snapshot_dir.name
    listed = listed_files(manifest)
    maps, identities = {}, []
    try:
        for file_name, expected in sorted(listed.items()):
            descriptor = os.open(snapshot_dir / file_name, os.O_RDONLY)
            try:
                stat = os.fstat(descriptor)
                if stat.st_size != expected["bytes"]:  # no need to hash it
                    raise digest_mismatch(snapshot_dir, file_name, expected)
                maps[file_name] = mmap.mmap(descriptor, 0, prot=mmap.PROT_READ) if stat.st_size else b""
            finally:
                os.close(descriptor)
            identities.append(_identity(file_name, stat, expected))
    except OSError as exc:
        raise SnapshotError(f"snapshot {name}: cannot read {exc.filename and Path(exc.filename).name}: "
                            f"{exc.strerror}") from None
    marks = _marks_folder() if verify == "once" else None
    mark = _mark(identities)
    if marks is None or not (marks / mark).exists():
        with ThreadPoolExecutor(max_workers=len(maps), thread_name_prefix="snapshot-verify") as pool:
            checks = [pool.submit(check_digest, snapshot_dir, file_name, memoryview(data), listed[file_name])
                      for file_name, data in maps.items()]
            for check in checks:
                check.result()  # raises the first file's SnapshotError
        marks = marks or (_marks_folder() if verify == "always" else None)
        if marks is not None:
            _leave_mark(marks, mark)
    served = maps.pop(SERVED_FILE)
    maps.clear()  # the other files' mappings go with their last reference
    try:
        batch = pa.ipc.open_file(pa.py_buffer(served)).get_batch(0)
    except (pa.ArrowException, IndexError, OSError) as exc:
        raise SnapshotError(f"snapshot {name}: {SERVED_FILE} cannot be read: {exc}") from None
    if batch.schema.remove_metadata() != SERVED_SCHEMA.remove_metadata() or batch.num_rows != 1 or \
            (batch.schema.metadata or {}).get(b"selfmodel.served_format") != str(SERVED_FORMAT).encode():
        raise SnapshotError(f"snapshot {name}: {SERVED_FILE} is not in the layout this reader knows "
                            f"(format {SERVED_FORMAT})")
    return batch


# --- one loaded snapshot ------------------------------------------------------------------------------

def _clean_text(value: str, limit: int = 80) -> str:
    """A value as it may appear in a prompt: one line, no control characters, bounded length."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Snapshot:
    """One snapshot as columns: a user index (`ordinal`), each user's row range, and per-row arrays.

    From beliefs.arrow every array is a view of the mapped file (the index is its hash table); from a
    snapshot without it, beliefs.parquet is decoded into compact arrays with a dict as the index. Per
    row five machine numbers (key and value are dictionary codes). Nothing changes after construction.
    """

    def __init__(self, snapshot_dir: Path, verify: str = "once") -> None:
        snapshot_dir = Path(snapshot_dir)
        self.dir = snapshot_dir
        self.manifest = read_manifest(snapshot_dir)
        self.version: str = self.manifest["version"]
        if self.version != snapshot_dir.name:
            raise SnapshotError(f"folder {snapshot_dir.name} holds the manifest of snapshot {self.version}")
        self.as_of = datetime.fromisoformat(self.manifest["data_as_of"])
        self.serving_threshold = float(self.manifest["serving_threshold"])
        self.min_confidence_floor = float(self.manifest.get("min_confidence", 0.0))
        self._value_text: dict[int, str] = {}  # prompt-safe values, cleaned when first used
        if SERVED_FILE in self.manifest.get("served_files", {}):
            self._map(_map_verified(snapshot_dir, self.manifest, verify))
        else:  # a snapshot written before beliefs.arrow existed
            self._decode()
        self._labels = [_label(name) for name in self.key_names]

    def _map(self, batch: pa.RecordBatch) -> None:
        """Views over the mapped beliefs.arrow: nothing decoded or copied but the key names (a few hundred)."""
        array = {name: batch.column(name).values for name in batch.schema.names}
        self.rows, self.users = len(array["confidence"]), len(array["user_ids"])
        for what, found in (("rows", self.rows), ("users", self.users)):
            if found != self.manifest[what]:
                raise SnapshotError(f"snapshot {self.version}: {found} {what}, manifest says {self.manifest[what]}")
        user_ids = array["user_ids"]
        self._id_offsets = _view(user_ids.buffers()[1], "q", user_ids.offset, self.users + 1)
        self._id_bytes = memoryview(user_ids.buffers()[2] or b"").cast("B")
        user_rows = _view(array["user_rows"], "q")
        self.first, self.end = user_rows[0::2], user_rows[1::2]
        self._bucket_starts = _view(array["bucket_starts"], "q")
        buckets = len(self._bucket_starts) - 1
        self._mask = buckets - 1
        if (len(user_rows) != 2 * self.users or buckets < 1 or buckets & self._mask
                or self._bucket_starts[-1] != self.users
                or any(len(array[name]) != self.rows for name in _ROW_ARRAYS)):
            raise SnapshotError(f"snapshot {self.version}: the arrays of {SERVED_FILE} do not fit together")
        self.key_names: list[str] = array["key_names"].to_pylist()
        self.value_names = _Strings(array["value_names"])
        self.key_codes = _view(array["key_codes"], "i")
        self.value_codes = _view(array["value_codes"], "i")
        self.confidence = _view(array["confidence"], "d")
        self.evidence = _view(array["evidence_count"], "q")
        self.last_us = _view(array["last_evidence_at"], "q")
        self.ordinal = self._find

    def _find(self, user_id: str) -> int | None:
        """The user's ordinal by the hash table in beliefs.arrow: a bucket, then a byte comparison per user in it."""
        try:
            key = user_id.encode()
        except (AttributeError, UnicodeEncodeError):
            return None  # not a str, or one no snapshot can hold (a lone surrogate)
        starts, offsets, ids = self._bucket_starts, self._id_offsets, self._id_bytes
        bucket = zlib.crc32(key) & self._mask  # user_bucket, inlined
        ordinal, stop = starts[bucket], starts[bucket + 1]
        while ordinal < stop:  # no range object: ~0.2 us less per lookup
            if ids[offsets[ordinal]:offsets[ordinal + 1]] == key:
                return ordinal
            ordinal += 1
        return None

    def _decode(self) -> None:
        """beliefs.parquet decoded into compact arrays, with a dict as the user index."""
        snapshot_dir = self.dir
        self.index, starts, table = _load_verified(snapshot_dir, self.manifest)
        self.ordinal = self.index.get
        self.rows = table.num_rows
        if len(self.index) != self.manifest["users"]:
            raise SnapshotError(f"snapshot {self.version}: {len(self.index)} users, manifest says {self.manifest['users']}")
        self.users = len(self.index)
        starts = _view(starts, "q")
        self.first, self.end = starts, starts[1:]
        table = table.unify_dictionaries()  # key and value: small dictionaries
        column = {name: table.column(name).combine_chunks() for name in table.column_names}

        keys, values = column["key"], column["value"]
        self.key_names: list[str] = keys.dictionary.to_pylist()
        self.value_names: Sequence[str] = values.dictionary.to_pylist()
        self.key_codes = _view(keys.indices, "i")
        self.value_codes = _view(values.indices, "i")
        self.confidence = _view(column["confidence"], "d")
        self.evidence = _view(column["evidence_count"], "q")
        self.last_us = _view(column["last_evidence_at"].view(pa.int64()), "q")
        del table, column, keys, values
        pa.default_memory_pool().release_unused()  # the decode's scratch buffers, back to the system

    def belief(self, row: int) -> Belief:
        belief = _new(Belief)  # _fast, inlined: this is the per-belief cost of reading a model
        _set_dict(belief, {
            "key": self.key_names[self.key_codes[row]],
            "value": self.value_names[self.value_codes[row]],
            "confidence": self.confidence[row],
            "evidence_count": self.evidence[row],
            "last_evidence_at": _EPOCH + timedelta(microseconds=self.last_us[row]),
        })
        _set_fields(belief, _BELIEF_FIELDS)
        _set_extra(belief, None)
        _set_private(belief, None)
        return belief

    def model(self, user_id: str) -> SelfModel:
        ordinal = self.ordinal(user_id)
        model = _new(SelfModel)  # _fast, inlined: this is the cost of a lookup
        _set_dict(model, {
            "user_id": user_id, "snapshot_version": self.version, "as_of": self.as_of,
            "cold_start": ordinal is None,
            "beliefs": () if ordinal is None else BeliefView(self, self.first[ordinal], self.end[ordinal]),
        })
        _set_fields(model, _MODEL_FIELDS)
        _set_extra(model, None)
        _set_private(model, None)
        return model

    def enrich(self, query: str, user_id: str, min_confidence: float, max_beliefs: int) -> Enrichment:
        ordinal = self.ordinal(user_id)
        used: list[int] = []
        if ordinal is not None:
            confidence = self.confidence
            for row in range(self.first[ordinal], self.end[ordinal]):
                if confidence[row] < min_confidence or len(used) == max_beliefs:
                    break  # rows are most confident first
                used.append(row)
        enriched = query if not used else self._preamble(used) + "\n\n" + query
        return _fast(Enrichment, _ENRICHMENT_FIELDS, {
            "user_id": user_id, "query": query, "enriched_query": enriched,
            "beliefs_used": [self.belief(row) for row in used],
            "snapshot_version": self.version, "min_confidence": min_confidence,
        })

    def _preamble(self, rows: list[int]) -> str:
        items = []
        for row in rows:
            code = self.value_codes[row]
            value = self._value_text.get(code)
            if value is None:  # a race here only cleans the same value twice
                value = self._value_text[code] = _clean_text(self.value_names[code])
            items.append((self._labels[self.key_codes[row]], value))
        return _format_preamble(items)


def _user_index(users: pa.ChunkedArray) -> tuple[dict[str, int], pa.Array]:
    """{user_id: ordinal} and the row where each user's run starts (plus the row count at the end).

    Rows are sorted by user, so a user's rows are one run. Runs are found per row group on the
    dictionary codes (integers, not strings); a run cut by a row-group boundary is joined up. The dict
    is filled a row group at a time, so a background reload never holds the GIL for long.
    """
    index: dict[str, int] = {}
    run_starts, offset, previous = [], 0, None
    for chunk in users.chunks:
        if not len(chunk):
            continue
        codes = chunk.indices
        first = pc.is_valid(codes.slice(0, 1))
        changed = pc.not_equal(codes.slice(1), codes.slice(0, len(codes) - 1))
        local = pc.indices_nonzero(pa.concat_arrays([first, changed]))
        ids = chunk.dictionary.take(codes.take(local)).to_pylist()
        if ids[0] == previous:  # the last user of the previous row group goes on here
            ids, local = ids[1:], local.slice(1)
        before = len(index)
        index.update(zip(ids, range(before, before + len(ids))))
        if len(index) != before + len(ids):
            raise SnapshotError("a user appears in two places: rows are not grouped by user")
        run_starts.append(pc.add(local.cast(pa.int64()), _int64(offset)[0]))
        offset += len(chunk)
        previous = ids[-1] if ids else previous
    run_starts.append(_int64(offset))
    return index, pa.concat_arrays(run_starts)


def _int64(value: int) -> pa.Array:
    """A one-element int64 array, built without pa.array / pa.scalar (see _load_verified)."""
    return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(struct.pack("=q", value))])


def _load_verified(snapshot_dir: Path, manifest: dict) -> tuple[dict[str, int], pa.Array, pa.Table]:
    """The user index, run starts and other served columns of beliefs.parquet, from bytes whose sha256
    matches the manifest.

    The file is memory-mapped once; three things then run at the same time: sha256 over the bytes,
    Arrow decoding the belief columns (both release the GIL), and this thread filling the user index
    from the decoded user ids. Nothing is returned unless the hash matched.
    """
    expected = manifest.get("files", {}).get(BELIEFS_FILE)
    if not expected:
        raise SnapshotError(f"manifest of {snapshot_dir.name} does not list {BELIEFS_FILE}")
    name = snapshot_dir.name
    try:
        data = pa.memory_map(str(Path(snapshot_dir) / BELIEFS_FILE)).read_buffer()
    except (OSError, pa.ArrowException) as exc:
        raise SnapshotError(f"snapshot {name}: cannot read {BELIEFS_FILE}: {exc}") from None

    def columns(names: list[str]) -> pa.Table:
        # ParquetFile.read, and no Python scalars or lists handed to Arrow: pq.read_table, pa.array and
        # pa.scalar import pandas (a second, and ~50 MB) on their first call. One decoding thread each:
        # Arrow's own pool only adds contention on a busy 2-core machine.
        return pq.ParquetFile(pa.BufferReader(data), read_dictionary=["user_id", "key", "value"]).read(
            columns=names, use_threads=False)

    problem: Exception | None = None
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="snapshot-load") as pool:
        digest = pool.submit(lambda: hashlib.sha256(memoryview(data)).hexdigest())
        users = pool.submit(columns, ["user_id"])
        rest = pool.submit(columns, _SERVED_COLUMNS[1:])
        try:
            index, starts = _user_index(users.result().column("user_id"))
        except (pa.ArrowException, OSError, SnapshotError) as exc:
            problem = exc
        try:
            table = rest.result()
        except (pa.ArrowException, OSError) as exc:
            problem = problem or exc
        matches = data.size == expected["bytes"] and digest.result() == expected["sha256"]
    if not matches:
        raise SnapshotError(f"snapshot {name}: {BELIEFS_FILE} does not match the sha256 in its manifest")
    if isinstance(problem, SnapshotError):
        raise SnapshotError(f"snapshot {name}: {problem}")
    if problem is not None:
        raise SnapshotError(f"snapshot {name}: {BELIEFS_FILE} cannot be read: {problem}")
    if table.num_rows != manifest["rows"]:
        raise SnapshotError(f"snapshot {name}: {table.num_rows} rows, manifest says {manifest['rows']}")
    return index, starts, table


def _view(array: pa.Array | pa.Buffer | None, code: str, offset: int = 0, length: int = 0) -> memoryview:
    """A zero-copy Python view of a primitive Arrow array without nulls (the buffers stay alive with it), or
    of `length` items of a buffer from item `offset` on."""
    if isinstance(array, pa.Array):
        if array.null_count:
            raise SnapshotError("a snapshot column that must be complete has nulls")
        array, offset, length = array.buffers()[1], array.offset, len(array)
    width = {"q": 8, "d": 8, "i": 4}[code]
    if array is None:  # an empty array may have no data buffer
        return memoryview(b"").cast(code)
    return memoryview(array).cast("B")[offset * width:(offset + length) * width].cast(code)


_ROW_ARRAYS = ("key_codes", "value_codes", "evidence_count", "last_evidence_at")


class _Strings(Sequence):
    """A mapped large_string array read as a sequence of str, each decoded when read (nothing held)."""

    __slots__ = ("_offsets", "_data")

    def __init__(self, array: pa.Array) -> None:
        self._offsets = _view(array.buffers()[1], "q", array.offset, len(array) + 1)
        self._data = memoryview(array.buffers()[2] or b"")

    def __len__(self) -> int:
        return max(0, len(self._offsets) - 1)

    def __getitem__(self, index: int) -> str:
        return str(self._data[self._offsets[index]:self._offsets[index + 1]], "utf-8")


# The preamble's lines: key family -> (order, label). expertise@<topic> has a line of its own.
_FAMILY_LABELS = {
    "role": (0, "role"),
    "expertise": (1, "expertise"),
    "topic": (3, "interested in"),
    "style.verbosity": (4, "prefers answers"),
    "style.format": (5, "writes with"),
    "language": (6, "language"),
    "fact": (7, "has said"),
}
_BY_TOPIC, _FACTS, _OTHER = 2, 7, 8


def _label(key: str) -> tuple[int, str, str]:
    """(line order, line label, topic) for a belief key; families we do not know come last, by name."""
    family, _, topic = key.partition("@")
    if family == "expertise" and topic:
        return (_BY_TOPIC, "expertise by topic", _clean_text(topic, 40))
    if family in _FAMILY_LABELS:
        order, label = _FAMILY_LABELS[family]
        return (order, label, "")
    return (_OTHER, _clean_text(key, 40), "")


def _format_preamble(items: list[tuple[tuple[int, str, str], str]]) -> str:
    """The preamble (module docstring) of (label of the key, cleaned value) pairs, most confident first."""
    lines: dict[tuple[int, str], list[str]] = {}
    by_topic: dict[str, list[str]] = {}  # expertise@<topic>: level -> topics
    for (order, label, topic), value in items:
        if order == _BY_TOPIC:
            by_topic.setdefault(value, []).append(topic)
            lines.setdefault((order, label), [])
        else:
            lines.setdefault((order, label), []).append(value)
    out = ["About the user (from past interactions):"]
    for (order, label), values in sorted(lines.items()):
        if order == _BY_TOPIC:
            text = "; ".join(f"{level} in {', '.join(topics)}" for level, topics in by_topic.items())
        else:
            text = ("; " if order == _FACTS else ", ").join(values)
        out.append(f"- {label}: {text}")
    return "\n".join(out)


def enriched_query(query: str, beliefs: Sequence[tuple[str, str]]) -> str:
    """The query as `BeliefStore.enrich` serves it for these (key, value) beliefs, already chosen (at or above
    the threshold, at most max_beliefs) and most confident first: for an offline judge of what the service
    serves (selfmodel.evals.enrichment)."""
    if not beliefs:
        return query
    return _format_preamble([(_label(key), _clean_text(value)) for key, value in beliefs]) + "\n\n" + query


class BeliefView(Sequence):
    """The beliefs of one user in one snapshot: a read-only sequence that builds `Belief`s when read."""

    __slots__ = ("_snapshot", "_start", "_stop")

    def __init__(self, snapshot: _Snapshot, start: int, stop: int) -> None:
        self._snapshot, self._start, self._stop = snapshot, start, stop

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._snapshot.belief(self._start + i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("belief index out of range")
        return self._snapshot.belief(self._start + index)

    def __iter__(self):
        belief = self._snapshot.belief
        for row in range(self._start, self._stop):
            yield belief(row)

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return repr(list(self))


# --- the store ------------------------------------------------------------------------------------------

class BeliefStore:
    """The published snapshot in memory, following CURRENT.

    `BeliefStore.open(path)` loads what CURRENT names (checksums verified) or raises SnapshotError.
    With `watch=True` (default) a daemon thread checks CURRENT every `poll_interval` seconds (one
    `stat`) and loads a new version beside the old one, then swaps it in; a version that fails
    verification is logged, recorded in `last_error`, and the old one keeps serving. `refresh()` does
    the same check synchronously. Thread-safe: each call reads one immutable snapshot.
    """

    def __init__(self, folder: Path, snapshot: _Snapshot, *, poll_interval: float | None,
                 verify: str = "once") -> None:
        self.folder = Path(folder)
        self._snapshot = snapshot
        self._verify = verify
        self._stat = self._current_stat()
        self._lock = threading.Lock()  # one reload at a time
        self._stop = threading.Event()
        self.last_error: str | None = None
        self._thread = None
        if poll_interval is not None:
            self._thread = threading.Thread(target=self._watch, args=(poll_interval,), name="belief-store-watch",
                                            daemon=True)
            self._thread.start()

    @classmethod
    def open(cls, path: str | os.PathLike, *, watch: bool = True, poll_interval: float = 1.0,
             verify: str = "once") -> "BeliefStore":
        """Open what CURRENT names. `verify`: "once" hashes a snapshot's files unless this user already
        hashed these very files (see _map_verified); "always" hashes them on every open and reload."""
        if verify not in ("once", "always"):
            raise ValueError(f"verify must be 'once' or 'always', not {verify!r}")
        folder = Path(path)
        version = read_current(folder)
        if version is None:
            raise SnapshotError(f"no snapshot published in {folder} (no {CURRENT_FILE}): run `selfmodel publish`")
        snapshot = _load_with_retry(folder, version, verify=verify)
        return cls(folder, snapshot, poll_interval=poll_interval if watch else None, verify=verify)

    # -- serving
    @property
    def version(self) -> str:
        return self._snapshot.version

    @property
    def manifest(self) -> dict:
        return self._snapshot.manifest

    @property
    def users(self) -> int:
        return self._snapshot.users

    def get(self, user_id: str) -> SelfModel:
        """The user's self-model in the current snapshot; a cold-start user gets an empty one."""
        return self._snapshot.model(user_id)

    def enrich(self, query: str, user_id: str, min_confidence: float | None = None,
               max_beliefs: int = 12) -> Enrichment:
        """The query with a short preamble of the user's beliefs at or above min_confidence (module docstring)."""
        snapshot = self._snapshot
        threshold = snapshot.serving_threshold if min_confidence is None else float(min_confidence)
        if not snapshot.min_confidence_floor <= threshold <= 1.0:
            raise ValueError(
                f"min_confidence {threshold} is outside [{snapshot.min_confidence_floor}, 1]: snapshot "
                f"{snapshot.version} holds only beliefs at or above {snapshot.min_confidence_floor}"
            )
        if max_beliefs < 1:
            raise ValueError("max_beliefs must be at least 1")
        return snapshot.enrich(query, user_id, threshold, max_beliefs)

    # -- following CURRENT
    def refresh(self) -> bool:
        """Load the version CURRENT names if it changed; True when a new snapshot was swapped in."""
        with self._lock:
            stat = self._current_stat()
            if stat == self._stat:
                return False
            try:
                version = read_current(self.folder)
                if version is None or version == self._snapshot.version:
                    self._stat = stat
                    return False
                snapshot = _load_with_retry(self.folder, version, verify=self._verify)
            except SnapshotError as exc:
                self.last_error = str(exc)
                log.error("keeping snapshot %s: %s", self._snapshot.version, exc)
                self._stat = stat  # do not retry a bad version on every poll; the next switch is a new stat
                return False
            self._snapshot = snapshot  # one assignment: readers see the old or the new, never a mix
            self._stat = stat
            self.last_error = None
            log.info("serving snapshot %s (%d users)", snapshot.version, snapshot.users)
            return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "BeliefStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _current_stat(self) -> tuple | None:
        try:
            stat = os.stat(self.folder / CURRENT_FILE)
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any surprise; the old snapshot keeps serving
                log.exception("checking %s failed", self.folder / CURRENT_FILE)


def open_snapshot(snapshot_dir: Path, verify: str = "always") -> "_Snapshot":
    """Open one snapshot folder as BeliefStore serves it (mapped, every file checked against the manifest):
    the writer's audit opens what it staged this way before it can be served."""
    return _Snapshot(Path(snapshot_dir), verify=verify)


def _load_with_retry(folder: Path, version: str, attempts: int = 3, verify: str = "once") -> _Snapshot:
    """Load a version; if it vanished meanwhile (pruned after newer publishes), follow CURRENT again."""
    for attempt in range(attempts):
        try:
            return _Snapshot(folder / version, verify)
        except SnapshotError:
            newer = read_current(folder)
            if attempt == attempts - 1 or (folder / version).is_dir() or newer in (None, version):
                raise  # a real problem with this version, not a race with the publisher
            version = newer
            time.sleep(0.05)
    raise AssertionError("unreachable")
