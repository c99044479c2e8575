"""Ingest a source into the warehouse as one atomic batch where every record is accounted for.

For each source: list its files, compare them with the file manifest (`ingest_files`) to decide what
to read (new, appended, rewritten or unchanged), stream the adapter's record chunks through
normalize_records.sql and classify_records.sql, and store events, quarantine rows, labels, the
manifest and the batch's counts in one transaction. Killed at any point, the warehouse holds all of
a batch or none of it; the manifest moves only with the rows, so a re-run resumes cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import duckdb
import pyarrow as pa

from selfmodel.clock import Clock, SystemClock
from selfmodel.quarantine import QUARANTINE_REASONS
from selfmodel.events import CANONICAL_FIELDS, json_path
from selfmodel.settings import ConfigError, Settings, SourceSettings
from selfmodel.sources import ADAPTERS, remote
from selfmodel.sources.base import (Adapter, FileRead, Label, file_identity, file_sha256,
                                   refuse_unreadable_compression)
from selfmodel.sources.chat import ChatLayout, explode_conversations
from selfmodel.sources.hints import file_hint, mostly_quarantined
from selfmodel.sources.postgres import PostgresReader, Watermark, dsn_secrets, scrub_exactly
from selfmodel.version import code_version
from warehouse.db import execute, load_sql, query_arrow_over_chunk, re2_literal, run, run_over_classified

log = logging.getLogger("selfmodel.ingest")

def classify_chunk_sql() -> str:
    """normalize_records feeding classify_records (which reads it as `normalized`), as one query."""
    return ("with normalized as materialized (\n" + load_sql("normalize_records") + "\n)\n"
            "select * from (\n" + load_sql("classify_records") + "\n)")


def conversation_outcomes(con: duckdb.DuckDBPyConnection, params: dict, classified: pa.Table,
                          chunk: pa.Table) -> pa.Table:
    """Format chat: classified events grouped back into conversations (chat_conversation_outcomes.sql, which
    reads `classified` and `chunk` as locals of this frame, see query_arrow_over_chunk)."""
    return con.sql(load_sql("chat_conversation_outcomes"), params=params).to_arrow_table()


# progress(source name, bytes done, bytes in total)
ProgressCallback = Callable[[str, int, int], None]


class SourceUnavailable(RuntimeError):
    """A source whose files cannot be found or listed: its batch cannot run at all."""


@dataclass
class BatchReport:
    source: str
    batch_id: str
    rows_read: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    late_events: int = 0
    labels_loaded: int = 0
    # The events the loaded records became: `loaded` for one event per record, more for format chat.
    events_loaded: int = 0
    status: str = "committed"
    error: str | None = None
    # A failure worth retrying (an I/O error, not a missing source or bad data); used by flow retries.
    retryable: bool = False
    files: list[dict] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.loaded + self.duplicates + self.quarantined

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FieldPlan:
    """How to find each canonical field in a source's records (bound as SQL parameters)."""

    paths: list[str]
    defaults: list[str | None]  # as JSON values
    default_texts: list[str | None]  # the same, as plain text
    strip_patch: str


def user_field_name(source: SourceSettings) -> str | None:
    """The key under which a source's records name their user: the mapped column, or the last key of a
    `$.a.b` / `$."a b"` path (None when the path ends in an array index)."""
    column = source.mapping.get("user_id", "user_id")
    if not column.startswith("$"):
        return column
    steps = re.findall(r'\.(?:"((?:[^"\\]|\\.)*)"|([^."\[\]]+))|(\[[^\]]*\])', column)
    if not steps or steps[-1][2]:
        return None
    quoted, plain, _ = steps[-1]
    return json.loads(f'"{quoted}"') if quoted else plain


def user_in_text_pattern(source: SourceSettings) -> str:
    """RE2 pattern of the user field as a record's text writes it (group 1: a string value, group 2: a
    number), read from records too broken to parse (a truncated line, a bad byte), so a quarantined record
    still says whose it is: `selfmodel forget` finds it by its user, and a forgotten user's old broken lines
    read again stay forgotten (classify_records.sql). Stack Exchange rows name theirs in an attribute."""
    name = user_field_name(source)
    key = re2_literal(json.dumps(name)) if name else NEVER_MATCHES
    openings = [key + r'\s*:\s*"']
    if source.format == "stackexchange":
        openings.append(r'\b(?:Owner)?UserId="')
    string_value = "(?:" + "|".join(openings) + r')((?:[^"\\]|\\.)*)"'
    number_value = key + r"\s*:\s*(-?[0-9]+)(?:[^0-9.eE]|$)"
    return f"{string_value}|{number_value}"


# An RE2 character class that no character belongs to.
NEVER_MATCHES = r"[^\s\S]"

# What an id is trimmed of at either end: every character Python's str.strip() drops (RE2's \s alone is
# ASCII): tab, newline, U+00A0, U+3000, the line and paragraph separators, ...
ID_WHITESPACE = r"\s\x0B\x1C-\x1F\x{85}\p{Z}"
# Characters that show nothing: format characters (U+200B, U+FEFF, bidi controls) and the letters and
# marks that render blank (Hangul fillers U+115F, U+1160, U+3164, U+FFA0; braille blank U+2800; the
# combining grapheme joiner U+034F; Khmer inherent vowels U+17B4, U+17B5). An id of only these and
# whitespace names no one anybody could see.
ID_INVISIBLE = r"\p{Cf}\x{115F}\x{1160}\x{3164}\x{FFA0}\x{2800}\x{034F}\x{17B4}\x{17B5}"
ID_PATTERNS = {
    "id_edge_whitespace": f"^[{ID_WHITESPACE}]+|[{ID_WHITESPACE}]+$",
    "blank_id": f"[{ID_WHITESPACE}{ID_INVISIBLE}]*",
    # inside an id: a control character, a line or paragraph separator, or a format character
    "id_bad_character": r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]",
}


def field_plan(source: SourceSettings) -> FieldPlan:
    paths, defaults, default_texts, strip = [], [], [], {}
    for name in CANONICAL_FIELDS:
        column = source.mapping.get(name, name)
        paths.append(json_path(column))
        default = source.defaults.get(name)
        defaults.append(json.dumps(default) if default is not None else None)
        default_texts.append(default)
        if not column.startswith("$"):
            strip[column] = None
        else:
            # '$.a.b' -> {"a": {"b": null}}: the mapped value leaves attributes, its siblings stay.
            keys = column.lstrip("$").strip(".").split(".")
            if all(keys):
                node = strip
                for key in keys[:-1]:
                    node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
                node[keys[-1]] = None
    return FieldPlan(paths, defaults, default_texts, json.dumps(strip))


@dataclass
class FileOutcomes:
    """Where one file's records went in a batch."""

    rows_read: int = 0
    reasons: Counter = field(default_factory=Counter)  # quarantine reason -> records

    def add(self, outcome: str, reason: str | None, records: int) -> None:
        self.rows_read += records
        if outcome == "quarantine":
            self.reasons[reason] += records


@dataclass
class FileState:
    size: int
    mtime_ns: int
    sha256: str
    consumed_bytes: int
    resume_offset: int
    resume_line: int
    etag: str | None = None


def file_label(path: Path, base_dir: Path) -> str:
    """Paths are stored relative to the config folder when inside it, so a moved project still matches."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(base_dir.resolve()))
    except ValueError:
        return str(resolved)


def plan_reads(adapter: Adapter, files: list[Path], manifest: dict[str, FileState], base_dir: Path,
               labels: dict[Path, str] | None = None) -> tuple[list[FileRead], list[dict], list[FileRead]]:
    """Decide per file whether to read it and from where.

    Returns (reads, actions, touched): `touched` are files whose bytes did not change although
    their mtime did; only their manifest entry is refreshed. `labels`: the name of each file in the
    warehouse when it is not its path (a staged copy of an object is named by the object's URL).
    """
    label_of = labels.__getitem__ if labels else (lambda path: file_label(path, base_dir))
    reads, actions, touched = [], [], []
    for path in files:
        label = label_of(path)
        stat = path.stat()
        previous = manifest.get(label)
        action, start_offset, start_line = "new", 0, 0
        if previous is not None and previous.size == stat.st_size and previous.mtime_ns == stat.st_mtime_ns:
            action = "unchanged"
        else:
            # A compressed file cannot be resumed at a byte offset: when it changes it is read again whole.
            appendable = adapter.appendable and refuse_unreadable_compression(path, label) is None
            if previous is None:
                pass
            elif (appendable and stat.st_size >= previous.consumed_bytes
                  and file_sha256(path, previous.consumed_bytes) == previous.sha256):
                if stat.st_size == previous.consumed_bytes:
                    action = "unchanged"
                else:
                    # Grew at the end: read on from before the last unterminated line (if any).
                    action, start_offset, start_line = "appended", previous.resume_offset, previous.resume_line
            elif not appendable and stat.st_size == previous.size and file_sha256(path) == previous.sha256:
                action = "unchanged"
            else:
                action = "rewritten"
        read = FileRead(path=path, label=label, start_offset=start_offset, start_line=start_line)
        actions.append({"path": label, "action": action})
        if action == "unchanged":
            if previous.mtime_ns != stat.st_mtime_ns:
                read.consumed_bytes, read.resume_offset = previous.consumed_bytes, previous.resume_offset
                read.resume_line, read.sha256 = previous.resume_line, previous.sha256
                touched.append(read)
        else:
            reads.append(read)
    if reads and getattr(adapter, "reads_as_group", False):
        # Files that only make sense together (a Stack Exchange dump) are re-read together;
        # events already stored come back as duplicates.
        reads = [FileRead(path=path, label=label_of(path)) for path in files]
        for entry in actions:
            if entry["action"] == "unchanged":
                entry["action"] = "reread"
        touched = []
    return reads, actions, touched


def _load_manifest(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, FileState]:
    rows = run(con, "file_manifest", {"source": source})
    return {row[0]: FileState(*row[1:]) for row in rows}


def _labels_table(labels: list[Label]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([label.user_id for label in labels], pa.string()),
            "label": pa.array([label.label for label in labels], pa.string()),
            "value": pa.array([label.value for label in labels], pa.string()),
            "observed_at": pa.array([label.observed_at for label in labels], pa.timestamp("us", tz="UTC")),
            "context": pa.array([label.context for label in labels], pa.string()),
        }
    )


def make_adapter(settings: Settings, source: SourceSettings, path: Path | None = None) -> Adapter:
    """The source's file adapter, over its configured path (or `path`: a folder of staged objects)."""
    return ADAPTERS[source.format](
        path or settings.resolve(source.path),
        source,
        chunk_records=settings.ingest.chunk_records,
        max_record_bytes=settings.ingest.max_record_bytes,
    )


def refuse_overlapping_sources(settings: Settings, source_name: str | None = None) -> None:
    """Raise ConfigError when a file belongs to two sources: its events would count as evidence twice.

    Sources are compared by the real files their adapters list now (device and inode), so the same
    file under two paths, a folder and a file in it, two globs and a symlink are all caught; comparing
    the configured paths could not. With `source_name`, only overlaps with that source are refused:
    they are refused even then, because the other source would read the file again on its next run.
    A source whose files cannot be listed is left to fail its own batch.
    """
    owners: dict[tuple[int, int], tuple[str, Path]] = {}
    overlaps: list[tuple[str, str, Path]] = []
    for source in settings.sources:
        if source.format == "postgres" or remote.is_remote(source.path):
            continue  # no local files to share
        try:
            files = make_adapter(settings, source).discover()
        except OSError:
            continue
        for path in files:
            try:
                identity = file_identity(path)
            except OSError:
                continue
            first = owners.setdefault(identity, (source.name, path))
            if first[0] != source.name and source_name in (None, first[0], source.name):
                overlaps.append((first[0], source.name, path))
    if not overlaps:
        return
    first_source, second_source, path = overlaps[0]
    more = f" (and {len(overlaps) - 1} more file(s))" if len(overlaps) > 1 else ""
    message = (f"sources {first_source!r} and {second_source!r} both read {file_label(path, settings.base_dir)}"
               f"{more}: a file may belong to one source only, or its events count twice; narrow one "
               "source's path")
    if source_name is not None:
        other = second_source if source_name == first_source else first_source
        message += f" (refused for {source_name!r} alone too: {other!r} would read the file again)"
    raise ConfigError(message)


class SourceIngestor:
    """Runs one batch for one source on an open read-write connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, settings: Settings, source: SourceSettings,
                 clock: Clock, progress: ProgressCallback | None = None) -> None:
        self.con = con
        self.settings = settings
        self.source = source
        self.clock = clock
        self.progress = progress
        # Format chat hands normalize events its adapter wrote in canonical names (the mapping is the adapter's).
        self.is_chat = source.rows_are_conversations
        self.plan = field_plan(source.model_copy(update={"mapping": {}, "defaults": {}}) if self.is_chat else source)
        # file label -> counts of this batch's records by outcome and by quarantine reason, for the hints
        self.file_outcomes: dict[str, FileOutcomes] = {}

    def _normalize_params(self, now: datetime) -> dict:
        hints = self.source.timestamps
        return {
            "paths": self.plan.paths,
            "defaults": self.plan.defaults,
            "default_texts": self.plan.default_texts,
            "strip": self.plan.strip_patch,
            "kinds": list(self.settings.ingest.kinds),
            "timezone": hints.timezone,
            "epoch_unit": hints.epoch_unit,
            "timestamp_format": hints.format,
            "min_occurred_at": self.settings.ingest.min_occurred_at,
            "max_occurred_at": now + timedelta(seconds=self.settings.ingest.max_clock_skew_seconds),
            "user_in_text": user_in_text_pattern(self.source),
            **ID_PATTERNS,
        }

    def _store_chunk(self, chunk: pa.Table, report: BatchReport, watermark: datetime | None,
                     normalize_params: dict, now: datetime, reread_files: list[str]) -> None:
        con = self.con
        # Raw records to outcomes in one statement, fetched as Arrow and dropped after this chunk.
        # Nothing is registered or created in the catalog: inside the batch's transaction every
        # temp table version and registered view (with the Arrow data it holds) lives until commit.
        classified = query_arrow_over_chunk(
            con, classify_chunk_sql(), {**normalize_params, "source": self.source.name, "watermark": watermark,
                                        "batch_id": report.batch_id, "reread_files": reread_files},
            chunk)
        if self.is_chat:
            classified = conversation_outcomes(con, {"source": self.source.name, "batch_id": report.batch_id,
                                                     "reread_files": reread_files}, classified, chunk)
        run_over_classified(con, "insert_events",
                            {"source": self.source.name, "batch_id": report.batch_id, "ingested_at": now}, classified)
        run_over_classified(con, "insert_quarantine",
                            {"source": self.source.name, "batch_id": report.batch_id, "quarantined_at": now},
                            classified)
        counting = "count_conversation_outcomes" if self.is_chat else "count_outcomes"
        [(rows_read, loaded, duplicates, quarantined, late, events_loaded)] = run_over_classified(
            con, counting, None, classified)
        report.rows_read += rows_read
        report.loaded += loaded
        report.duplicates += duplicates
        report.quarantined += quarantined
        report.late_events += late
        report.events_loaded += events_loaded
        for file, outcome, reason, records in run_over_classified(con, f"{counting}_by_file", None, classified):
            self.file_outcomes.setdefault(file, FileOutcomes()).add(outcome, reason, records)
            if outcome == "quarantine" and reason not in QUARANTINE_REASONS:
                # Kept as it is (nothing is lost); the reference would not explain it, so say so loudly.
                log.error("quarantine reason %r is not in selfmodel.quarantine.QUARANTINE_REASONS: a bug, "
                          "please report it", reason)

    def run(self) -> BatchReport:
        started = self.clock.now()
        batch_id = f"{started:%Y%m%dT%H%M%S}-{self.source.name}-{uuid.uuid4().hex[:8]}"
        report = BatchReport(source=self.source.name, batch_id=batch_id)
        con = self.con
        [(watermark,)] = run(con, "source_watermark", {"source": self.source.name})
        execute(con, "begin transaction")
        try:
            self._run_in_transaction(report, watermark, started)
            execute(con, "commit")
        except Exception as exc:
            execute(con, "rollback")
            # The reason goes into ingest_batches and the report; the traceback only to debug logs.
            # Scrubbed of any credential the source reads (a DSN, a storage key) before it is logged or kept.
            error = scrub_exactly(f"{type(exc).__name__}: {exc}", self._secrets())
            log.warning("batch %s of source %s failed: %s", batch_id, self.source.name, error)
            if not self._secrets():  # a traceback could quote what the scrubbed message leaves out
                log.debug("batch %s failed", batch_id, exc_info=True)
            failed = BatchReport(source=self.source.name, batch_id=batch_id, status="failed",
                                 error=error, files=report.files,
                                 retryable=isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError))
            self._record_batch(failed, started, self.clock.now(), watermark)
            return failed
        return report

    def _secrets(self) -> list[str]:
        """The credentials this source reads from the environment, to scrub from any error."""
        secrets = remote.storage_secrets()
        postgres = self.source.postgres
        if postgres is not None and postgres.dsn_env and os.environ.get(postgres.dsn_env):
            secrets += dsn_secrets(os.environ[postgres.dsn_env])
        return secrets

    def _run_in_transaction(self, report: BatchReport, watermark: datetime | None, started: datetime) -> None:
        if self.source.format == "postgres":
            self._read_postgres(report, watermark, started)
        elif remote.is_remote(self.source.path):
            staging_root = self.settings.warehouse_path.parent
            staging_root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=staging_prefix(self.settings), dir=staging_root) as staging:
                self._read_files(report, watermark, started, Path(staging))
        else:
            self._read_files(report, watermark, started)

    def _stage_objects(self, adapter: Adapter, manifest: dict[str, FileState], staging: Path,
                       ) -> tuple[list[Path], dict[Path, str], dict[str, str | None], list[dict]]:
        """List the source's objects; copy to `staging` those whose ETag is not the manifest's.

        Returns (staged files, their labels, each object's ETag by label, actions of objects left unread).
        """
        patterns = {"jsonl": ("*.jsonl", "*.ndjson", "*.json"), "csv": ("*.csv", "*.tsv"),
                    "parquet": ("*.parquet", "*.pq"), "chat": ("*.jsonl", "*.ndjson", "*.json", "*.parquet", "*.pq"),
                    }.get(self.source.format, ("*",))
        try:
            objects = remote.list_objects(self.source.path, patterns)
        except OSError as exc:
            raise SourceUnavailable(str(exc)) from exc
        if not objects:
            raise SourceUnavailable(f"no objects found at {self.source.path}")
        files, labels, etags, unread = [], {}, {}, []
        for index, obj in enumerate(objects):
            previous = manifest.get(obj.url)
            if (previous is not None and obj.etag is not None and previous.etag == obj.etag
                    and not adapter.reads_as_group):
                unread.append({"path": obj.url, "action": "unchanged"})
                continue
            local = staging / remote.staging_name(index, obj.url)
            remote.download(obj.url, local)
            files.append(local)
            labels[local] = obj.url
            etags[obj.url] = obj.etag
        return files, labels, etags, unread

    def _read_postgres(self, report: BatchReport, watermark: datetime | None, started: datetime) -> None:
        """A postgres source's batch: rows from the cursor watermark (less the lookback) on; the watermark
        moves, in this transaction, to the greatest cursor value read."""
        settings = self.source.postgres
        stored = run(self.con, "source_cursor", {"source": self.source.name})
        cursor_before = None
        if stored and stored[0][0] == settings.cursor:  # a watermark of another column says nothing here
            cursor_before = Watermark(stored[0][1], stored[0][2])
        reader = PostgresReader(settings, chunk_records=self.settings.ingest.chunk_records,
                                max_record_bytes=self.settings.ingest.max_record_bytes)
        labels: list[Label] = []
        chunks = reader.read(cursor_before, labels)
        if self.is_chat:
            chunks = explode_conversations(chunks, ChatLayout.of(self.source), self.settings.ingest.chunk_records)
        normalize_params = self._normalize_params(started)
        # Rows have no fixed place in a table: a bad row read again is known by its reason and text wherever
        # it comes (as in a file read again whole, classify_records.sql).
        for chunk in chunks:
            self._store_chunk(chunk, report, watermark, normalize_params, started, [reader.label])
            if self.progress and chunk.num_rows:  # rows, not bytes: a table's size is not known ahead
                self.progress(self.source.name, reader.rows_read, reader.rows_read)
        cursor_after = reader.new_watermark
        if cursor_before is not None and (cursor_after is None or cursor_after.value() < cursor_before.value()):
            cursor_after = cursor_before  # never backwards (the rows past it may have been deleted)
        report.files = [{"path": reader.label, "action": "read", "rows": reader.rows_read,
                         "cursor_from": cursor_before.text if cursor_before else None,
                         "cursor_to": cursor_after.text if cursor_after else None}]
        if cursor_after is not None:
            run(self.con, "upsert_source_cursor", {
                "source": self.source.name, "cursor_column": settings.cursor, "value_type": cursor_after.value_type,
                "watermark": cursor_after.text, "batch_id": report.batch_id, "updated_at": started})
        if not report.balanced:  # a bug, never bad input: refuse to commit numbers that do not add up
            raise AssertionError(f"batch {report.batch_id} does not balance: {report}")
        self._record_batch(report, started, self.clock.now(), watermark)

    def _read_files(self, report: BatchReport, watermark: datetime | None, started: datetime,
                    staging: Path | None = None) -> None:
        base_dir = self.settings.base_dir
        manifest = _load_manifest(self.con, self.source.name)
        labels_by_path, etags, unread = None, {}, []
        if staging is None:
            adapter = make_adapter(self.settings, self.source)
            try:
                files = adapter.discover()
            except OSError as exc:
                raise SourceUnavailable(str(exc)) from exc
            if not files:
                raise SourceUnavailable(f"no files found at {self.settings.resolve(self.source.path)}")
        else:
            adapter = make_adapter(self.settings, self.source, staging)
            files, labels_by_path, etags, unread = self._stage_objects(adapter, manifest, staging)
        reads, actions, touched = plan_reads(adapter, files, manifest, base_dir, labels_by_path)
        report.files = unread + actions
        total_bytes = sum(read.path.stat().st_size - read.start_offset for read in reads)
        normalize_params = self._normalize_params(started)
        labels: list[Label] = []
        done_bytes = 0
        # Files read again from their start, whose bad lines may have moved (see classify_records.sql).
        reread_files = [entry["path"] for entry in actions if entry["action"] in ("rewritten", "reread")]
        for chunk in adapter.read(reads, labels) if reads else ():
            self._store_chunk(chunk, report, watermark, normalize_params, started, reread_files)
            if self.progress and chunk.num_rows:
                offsets = chunk.column("byte_offset")
                last = offsets[-1].as_py()
                done_bytes = max(done_bytes, last or done_bytes)
                self.progress(self.source.name, min(done_bytes, total_bytes), total_bytes)
        self._add_hints(report.files, {read.label: read.path for read in reads})
        if labels:
            self.con.register("new_labels", _labels_table(labels))
            [(report.labels_loaded,)] = run(
                self.con, "insert_labels", {"source": self.source.name, "batch_id": report.batch_id})
            self.con.unregister("new_labels")
        for read in [*reads, *touched]:
            stat = read.path.stat()
            run(self.con, "upsert_file_manifest", {
                "source": self.source.name, "path": read.label,
                # The size and mtime recorded are those of the bytes read, so a file that grew while
                # being read is seen as grown next time.
                "size": read.consumed_bytes if adapter.appendable else stat.st_size,
                # A staged object's mtime is that of its copy: its ETag tells whether it changed.
                "mtime_ns": stat.st_mtime_ns if read.consumed_bytes == stat.st_size and staging is None else 0,
                "etag": etags.get(read.label),
                "sha256": read.sha256, "consumed_bytes": read.consumed_bytes,
                "resume_offset": read.resume_offset, "resume_line": read.resume_line,
                "batch_id": report.batch_id, "updated_at": started,
            })
        if self.progress:
            self.progress(self.source.name, total_bytes, total_bytes)
        if not report.balanced:  # a bug, never bad input: refuse to commit numbers that do not add up
            raise AssertionError(f"batch {report.batch_id} does not balance: {report}")
        self._record_batch(report, started, self.clock.now(), watermark)

    def _add_hints(self, entries: list[dict], paths: dict[str, Path]) -> None:
        """Give each mostly quarantined file whose cause is recognisable a `hint` saying what to change."""
        for entry in entries:
            outcomes = self.file_outcomes.get(entry["path"])
            if outcomes is None or entry["path"] not in paths:
                continue
            if mostly_quarantined(outcomes.rows_read, sum(outcomes.reasons.values())):
                hint = file_hint(paths[entry["path"]], self.source, outcomes.reasons)
                if hint:
                    entry["hint"] = hint
                    log.info("source %s, file %s: %s", self.source.name, entry["path"], hint)

    def _record_batch(self, report: BatchReport, started: datetime, ended: datetime,
                      watermark: datetime | None) -> None:
        run(self.con, "insert_batch", {
            "batch_id": report.batch_id, "source": report.source, "format": self.source.format,
            "status": report.status, "started_at": started, "ended_at": ended,
            "rows_read": report.rows_read, "loaded": report.loaded, "duplicates": report.duplicates,
            "quarantined": report.quarantined, "late_events": report.late_events,
            "labels_loaded": report.labels_loaded, "events_loaded": report.events_loaded,
            "files": json.dumps(report.files),
            "watermark_before": watermark, "error": report.error, "code_version": code_version(),
        })


def ingest_source(con: duckdb.DuckDBPyConnection, settings: Settings, source: SourceSettings,
                  clock: Clock | None = None, progress: ProgressCallback | None = None) -> BatchReport:
    """Ingest one source as one batch on an open connection."""
    return SourceIngestor(con, settings, source, clock or SystemClock(), progress).run()


def staging_prefix(settings: Settings) -> str:
    """Objects of a remote source are copied into `<warehouse file>.staging-*` beside the warehouse for the
    batch (named after the warehouse file, so never a folder of the user's) and removed after it."""
    return settings.warehouse_path.name + ".staging-"


def staging_leftovers(settings: Settings) -> list[Path]:
    """Staging folders of batches killed with -9 (they hold users' records: `selfmodel forget` clears them)."""
    root = settings.warehouse_path.parent
    return sorted(path for path in root.glob(staging_prefix(settings) + "*") if path.is_dir()) if root.is_dir() else []


def ingest(settings: Settings, source_name: str | None = None, clock: Clock | None = None,
           progress: ProgressCallback | None = None) -> list[BatchReport]:
    """Ingest every configured source (or one), each as its own batch; opens the warehouse once."""
    sources = [settings.source(source_name)] if source_name else list(settings.sources)
    refuse_overlapping_sources(settings, source_name)
    from selfmodel.analyst import open_for_writing  # analysts see the batches as soon as they are in

    with open_for_writing(settings, clock=clock) as con:
        return [ingest_source(con, settings, source, clock, progress) for source in sources]
