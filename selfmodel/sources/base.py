"""What every source adapter produces: chunks of raw records in one Arrow layout, plus labels.

An adapter does no validation of canonical fields: it turns its format into records (the raw text of
what it read, and a JSON document of canonical-named fields when the format needs translating) and
marks only what it alone can see (bad bytes, XML it cannot parse). Validation and normalisation of
every format then happen once, in warehouse/queries/normalize_records.sql.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import hashlib
import io
import lzma
import os
import stat
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

import pyarrow as pa

RECORD_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("line_no", pa.int64()),
        ("byte_offset", pa.int64()),
        ("raw_text", pa.string()),
        ("raw_bytes", pa.binary()),
        # JSON object with the record's fields; NULL means "parse raw_text as the JSON object".
        ("doc", pa.string()),
        ("is_unterminated", pa.bool_()),
        ("pre_reason", pa.string()),
        ("pre_detail", pa.string()),
        # Only where one record becomes several events (format chat: a conversation): the event's position
        # among its record's events. Rows sharing file and line_no with a part_no are one record.
        ("part_no", pa.int64()),
        # Added to the event's parsed occurred_at: a conversation's messages that share its one time keep
        # their order (message index microseconds later).
        ("occurred_at_offset_us", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Label:
    """A profile or ground-truth fact about a user; evaluation may read it, beliefs never."""

    user_id: str
    label: str
    value: str
    observed_at: datetime | None = None
    context: str | None = None


@dataclass
class FileRead:
    """Where one file's reading started and ended, for the manifest."""

    path: Path
    label: str = ""  # how the file is named in the warehouse (relative to the config folder)
    start_offset: int = 0
    start_line: int = 0
    consumed_bytes: int = 0
    resume_offset: int = 0
    resume_line: int = 0
    sha256: str = ""
    records: int = 0

    def __post_init__(self) -> None:
        self.label = self.label or str(self.path)


class RecordBatchBuilder:
    """Collects records column by column and hands them out as Arrow tables of bounded size."""

    def __init__(self, chunk_records: int) -> None:
        self.chunk_records = chunk_records
        self._reset()

    def _reset(self) -> None:
        self._columns: dict[str, list] = {name: [] for name in RECORD_SCHEMA.names}

    def __len__(self) -> int:
        return len(self._columns["file"])

    def add(
        self,
        *,
        file: str,
        line_no: int | None,
        byte_offset: int | None,
        raw_text: str,
        doc: str | None = None,
        raw_bytes: bytes | None = None,
        is_unterminated: bool = False,
        pre_reason: str | None = None,
        pre_detail: str | None = None,
        part_no: int | None = None,
        occurred_at_offset_us: int | None = None,
    ) -> None:
        columns = self._columns
        columns["file"].append(file)
        columns["line_no"].append(line_no)
        columns["byte_offset"].append(byte_offset)
        columns["raw_text"].append(raw_text)
        columns["raw_bytes"].append(raw_bytes)
        columns["doc"].append(doc)
        columns["is_unterminated"].append(is_unterminated)
        columns["pre_reason"].append(pre_reason)
        columns["pre_detail"].append(pre_detail)
        columns["part_no"].append(part_no)
        columns["occurred_at_offset_us"].append(occurred_at_offset_us)

    @property
    def full(self) -> bool:
        return len(self) >= self.chunk_records

    def take(self) -> pa.Table:
        table = pa.Table.from_pydict(self._columns, schema=RECORD_SCHEMA)
        self._reset()
        return table


# How a compressed file starts, whatever its name. Python's standard library reads the first three;
# zstd (compression.zstd is Python 3.14) and zip archives are refused with UnsupportedCompression.
COMPRESSION_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)
READABLE_COMPRESSIONS = ("gzip", "bz2", "xz")
# Names a folder's listing includes beside plain files (events.jsonl.gz); zst and zip only to refuse them.
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")


class UnsupportedCompression(ValueError):
    """A file compressed in a way selfmodel cannot read: its batch fails, saying so in one line."""


def compression_of(path: Path) -> str | None:
    """gzip, bz2, xz, zstd or zip when the file's first bytes say so (its name does not matter); else None."""
    if not stat.S_ISREG(path.stat().st_mode):
        return None  # a named pipe: peeking would take bytes away from the reader
    with open(path, "rb") as handle:
        head = handle.read(10)
    for magic, name in COMPRESSION_MAGIC:
        if head.startswith(magic):
            # "BZh" is also plain text: bz2 goes on with a block size digit and a block or end-of-stream mark.
            if name == "bz2" and not (head[3:4].isdigit() and head[4:10] in (b"1AY&SY", b"\x17rE8P\x90")):
                continue
            return name
    return None


def refuse_unreadable_compression(path: Path, label: str) -> str | None:
    """The file's compression (see compression_of); UnsupportedCompression when it cannot be read."""
    compression = compression_of(path)
    if compression is not None and compression not in READABLE_COMPRESSIONS:
        how = "unzip it" if compression == "zip" else "decompress it (zstd -d)"
        raise UnsupportedCompression(
            f"{label} is {compression}-compressed, which selfmodel cannot read (it reads gzip, bz2 and xz): "
            f"{how}, or recompress it with gzip")
    return compression


def open_decompressed(raw: BinaryIO, compression: str | None) -> BinaryIO:
    """`raw` itself when not compressed, else a reader of its decompressed bytes."""
    if compression is None:
        return raw
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return {"bz2": bz2.BZ2File, "xz": lzma.LZMAFile}[compression](raw, mode="rb")


class CountingReader(io.RawIOBase):
    """Passes a file's raw bytes to a decompressor, hashing and counting them on the way."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.count = 0
        self.raw_failed = False  # an I/O error of the file itself, not of its compressed data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            count = self.raw.readinto(buffer)
        except OSError:
            self.raw_failed = True
            raise
        if count:
            self.digest.update(memoryview(buffer)[:count])
            self.count += count
        return count or 0


class PieceReader:
    """A reader whose read(n) is the decompressor's read1(n): read(n) gathers n bytes over many pieces
    and loses all of them when the data breaks before n, read1 hands over each piece as it comes."""

    def __init__(self, handle: BinaryIO) -> None:
        self._read = getattr(handle, "read1", handle.read)

    def read(self, size: int = -1) -> bytes:
        return self._read(size)


# What a broken compressed stream raises (a truncated or corrupt file): its data, not the machine.
DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)


def file_sha256(path: Path, limit: int | None = None) -> str:
    """sha256 of the file, or of its first `limit` bytes."""
    digest = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as handle:
        while remaining is None or remaining > 0:
            size = 1 << 20 if remaining is None else min(1 << 20, remaining)
            block = handle.read(size)
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    return digest.hexdigest()


def escape_raw(data: bytes) -> str:
    """Readable text for bytes that are not clean UTF-8: bad bytes and NUL shown as \\xNN."""
    return data.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


class Adapter:
    """A source format. Subclasses set `appendable` and implement `discover` and `read`."""

    # True when files only ever grow at the end (JSONL, CSV): a grown file is read from where the
    # last read stopped. Other formats are re-read whole and duplicates are recognised by event_id.
    appendable = False
    # True when files only make sense together (a Stack Exchange dump): any change re-reads all.
    reads_as_group = False

    def __init__(self, path: Path, options, *, chunk_records: int, max_record_bytes: int) -> None:
        self.path = path
        self.options = options
        self.chunk_records = chunk_records
        self.max_record_bytes = max_record_bytes

    def discover(self) -> list[Path]:
        """The files this source consists of now, in reading order."""
        raise NotImplementedError

    def read(self, reads: list[FileRead], labels: list[Label]) -> Iterator[pa.Table]:
        """Yield record chunks for `reads` (filling in where each ended) and append labels."""
        raise NotImplementedError


def expand_path(path: Path, patterns: tuple[str, ...], *, compressed: bool = True) -> list[Path]:
    """A file, every matching file in a folder, or the files a glob names; sorted, each file once.

    In a folder, `patterns` name the files to read, and with `compressed` their compressed forms too
    (*.jsonl also lists *.jsonl.gz, ...; see COMPRESSED_SUFFIXES). A file reachable by several paths
    (symlinks, hard links, a folder linked into another) would be read as many times: it is listed
    once, by the first of its paths in sorted order.
    """
    text = str(path)
    if any(char in text for char in "*?["):
        return unique_files(sorted(glob_files(text)))
    if path.is_dir():
        if compressed:
            patterns = patterns + tuple(pattern + suffix for pattern in patterns for suffix in COMPRESSED_SUFFIXES)
        return unique_files(sorted(p for pattern in patterns for p in path.glob(pattern) if p.is_file()))
    return [path]


def file_identity(path: Path) -> tuple[int, int]:
    """What makes two paths the same file: device and inode, symlinks followed."""
    info = path.stat()
    return info.st_dev, info.st_ino


def unique_files(paths: list[Path]) -> list[Path]:
    """`paths` without those naming a file already listed (the first path keeps it)."""
    seen: set[tuple[int, int]] = set()
    unique = []
    for path in paths:
        try:
            identity = file_identity(path)
        except OSError:  # gone since it was listed: reading it will say so
            unique.append(path)
            continue
        if identity not in seen:
            seen.add(identity)
            unique.append(path)
    return unique


def _is_glob(part: str) -> bool:
    return any(char in part for char in "*?[")


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except OSError:  # unreadable or vanished: skipped, as glob.glob does
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks, as glob does
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def glob_files(pattern: str) -> list[Path]:
    """The files glob.glob(pattern, recursive=True) names, without walking a folder twice for one `**`.

    glob.glob follows symlinked folders with no memory of where it has been: a link to a parent folder
    is walked about 40 levels deep (until the kernel refuses the path), listing every file beneath it
    40 times; two such links make it 2^40. Here each real folder is visited at most once per `**` of the
    pattern. As in glob, `*`, `?`, `[...]` and `**` do not match names starting with '.'.
    """
    parts = Path(pattern).parts
    first = next(index for index, part in enumerate(parts) if _is_glob(part))
    visited: set[tuple[tuple[int, int], int]] = set()
    found: list[Path] = []

    def match(folder: Path, index: int) -> None:
        part, last = parts[index], index == len(parts) - 1
        if part == "**":
            try:
                key = (file_identity(folder), index)
            except OSError:
                return
            if key in visited:
                return
            visited.add(key)
            entries = [entry for entry in _entries(folder) if not entry.name.startswith(".")]
            if last:
                found.extend(folder / entry.name for entry in entries if _is_file(entry))
            else:
                match(folder, index + 1)  # `**` standing for no folder at all
            for entry in entries:
                if _is_dir(entry):
                    match(folder / entry.name, index)
        elif _is_glob(part):
            for entry in _entries(folder):
                if entry.name.startswith(".") and not part.startswith("."):
                    continue
                if fnmatch.fnmatchcase(entry.name, part):
                    if last and _is_file(entry):
                        found.append(folder / entry.name)
                    elif not last and _is_dir(entry):
                        match(folder / entry.name, index + 1)
        else:
            child = folder / part
            if last and child.is_file():
                found.append(child)
            elif not last and child.is_dir():
                match(child, index + 1)

    match(Path(*parts[:first]) if first else Path("."), first)
    return found
