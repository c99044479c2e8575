"""The snapshot contract: what a published belief snapshot folder holds and how it is read and verified.

The writer (selfmodel.publish) and the reader (warehouse.online) both import this module and nothing of
each other's: file names, the manifest's schema version, the version id pattern, the two file schemas, the
user hash of beliefs.arrow, reading CURRENT and a manifest, and checking a snapshot's files against it.

    <folder>/CURRENT                        the version in service (one line)
    <folder>/<version>/manifest.json        schema_version, data_as_of, counts, content_hash, files, served_files
    <folder>/<version>/beliefs.parquet      BELIEFS_SCHEMA, sorted by user, most confident first
    <folder>/<version>/beliefs.arrow        SERVED_SCHEMA: the same beliefs laid out to be memory-mapped

Light on purpose: it is loaded by every serving process (see tests/warehouse/test_online.py).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import zlib
from pathlib import Path

import blake3
import pyarrow as pa

SCHEMA_VERSION = 1
CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
BELIEFS_FILE = "beliefs.parquet"
# The same beliefs, uncompressed and laid out to be memory-mapped (SERVED_SCHEMA): what `BeliefStore` serves.
SERVED_FILE = "beliefs.arrow"
SERVED_FORMAT = 1
# A version id: UTC creation time, then the first 12 hex digits of the content hash. Sorts by time.
VERSION_PATTERN = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{12}")

BELIEFS_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("key", pa.string(), nullable=False),
    pa.field("value", pa.string(), nullable=False),
    pa.field("confidence", pa.float64(), nullable=False),
    pa.field("evidence_count", pa.int64(), nullable=False),
    pa.field("decayed_evidence", pa.float64(), nullable=False),
    pa.field("first_seen", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("last_evidence_at", pa.timestamp("us", tz="UTC"), nullable=False),
])
# beliefs.arrow: one Arrow IPC record batch of length 1; each column holds one whole array as its only list,
# so arrays of different lengths share one file. Buffers are 64-byte aligned and uncompressed: the reader
# maps the file and views the arrays in place (nothing is decoded or copied, and processes share the pages).
#   bucket_starts   buckets + 1 (buckets: a power of two >= users): a hash table stored as arrays. The users
#   user_ids        of bucket b = zlib.crc32(utf-8 of the id) & (buckets - 1) are user_ids[bucket_starts[b]:
#                   bucket_starts[b + 1]]; a user's ordinal is its position in user_ids (ids grouped by bucket,
#                   so a lookup reads one bucket entry, one id and one row range: few cache misses)
#   user_rows       2 x users: user i's rows are user_rows[2i]:user_rows[2i + 1]
#   key_codes, value_codes, confidence, evidence_count, last_evidence_at (microseconds since the epoch):
#                   one entry per belief, in beliefs.parquet's row order
#   key_names, value_names   what the codes stand for
SERVED_SCHEMA = pa.schema([
    pa.field("bucket_starts", pa.large_list(pa.int64())),
    pa.field("user_ids", pa.large_list(pa.large_string())),
    pa.field("user_rows", pa.large_list(pa.int64())),
    pa.field("key_codes", pa.large_list(pa.int32())),
    pa.field("value_codes", pa.large_list(pa.int32())),
    pa.field("confidence", pa.large_list(pa.float64())),
    pa.field("evidence_count", pa.large_list(pa.int64())),
    pa.field("last_evidence_at", pa.large_list(pa.int64())),
    pa.field("key_names", pa.large_list(pa.large_string())),
    pa.field("value_names", pa.large_list(pa.large_string())),
], metadata={"selfmodel.served_format": str(SERVED_FORMAT)})

class SnapshotError(RuntimeError):
    """No snapshot, or one that fails verification (missing file, wrong checksum or counts)."""


# --- reading the folder -----------------------------------------------------------------------------

def read_current(folder: Path) -> str | None:
    """The version CURRENT names, or None when nothing has been published."""
    try:
        text = (Path(folder) / CURRENT_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"cannot read {Path(folder) / CURRENT_FILE}: {exc}") from None
    if not VERSION_PATTERN.fullmatch(text):
        raise SnapshotError(f"{Path(folder) / CURRENT_FILE} does not name a snapshot version: {text[:80]!r}")
    return text


def read_manifest(snapshot_dir: Path) -> dict:
    path = Path(snapshot_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SnapshotError(f"snapshot {snapshot_dir.name} has no {MANIFEST_FILE}") from None
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"cannot read {path}: {exc}") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise SnapshotError(
            f"snapshot {snapshot_dir.name} has schema version {manifest.get('schema_version')!r}; "
            f"this reader knows {SCHEMA_VERSION}"
        )
    return manifest


def read_verified(snapshot_dir: Path, manifest: dict, name: str) -> bytes:
    """A snapshot file's bytes, after checking its size and sha256 against the manifest."""
    expected = listed_files(manifest).get(name)
    if not expected:
        raise SnapshotError(f"manifest of {snapshot_dir.name} does not list {name}")
    try:
        data = (Path(snapshot_dir) / name).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"snapshot {snapshot_dir.name}: cannot read {name}: {exc}") from None
    check_digest(snapshot_dir, name, data, expected)
    return data


def verify_snapshot(snapshot_dir: Path) -> dict:
    """Check every file of a snapshot against its manifest; return the manifest. Each file is hashed through a
    memory map, not read into memory: beliefs.arrow of a 1 M-user snapshot is ~0.6 GB."""
    snapshot_dir = Path(snapshot_dir)
    manifest = read_manifest(snapshot_dir)
    for name, expected in listed_files(manifest).items():
        try:
            with open(snapshot_dir / name, "rb") as file:
                if os.fstat(file.fileno()).st_size != expected["bytes"]:  # no need to hash it
                    raise digest_mismatch(snapshot_dir, name, expected)
                if not expected["bytes"]:
                    check_digest(snapshot_dir, name, b"", expected)
                    continue
                with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as data:
                    check_digest(snapshot_dir, name, data, expected)
        except OSError as exc:
            raise SnapshotError(f"snapshot {snapshot_dir.name}: cannot read {name}: {exc}") from None
    return manifest


def listed_files(manifest: dict) -> dict[str, dict]:
    """Every file a manifest checksums: `files` (the beliefs, which the content hash covers) and
    `served_files` (derived from them for serving, outside the content hash)."""
    return {**manifest.get("files", {}), **manifest.get("served_files", {})}


def check_digest(snapshot_dir: Path, name: str, data, expected: dict) -> None:
    """Raise SnapshotError unless data has the size and digest of its manifest entry (blake3 for the
    served file: ~2.5x faster than sha256 on the large uncompressed file; sha256 for the beliefs)."""
    algorithm = digest_algorithm(expected)
    if len(data) == expected["bytes"]:
        digest = (blake3.blake3(data, max_threads=blake3.blake3.AUTO) if algorithm == "blake3"
                  else hashlib.sha256(data)).hexdigest()
        if digest == expected[algorithm]:
            return
    raise digest_mismatch(snapshot_dir, name, expected)


def digest_algorithm(expected: dict) -> str:
    return "blake3" if "blake3" in expected else "sha256"


def digest_mismatch(snapshot_dir: Path, name: str, expected: dict) -> SnapshotError:
    return SnapshotError(f"snapshot {Path(snapshot_dir).name}: {name} does not match the {digest_algorithm(expected)} "
                         "in its manifest")


def user_bucket(user_id: str, buckets: int) -> int:
    """The bucket of beliefs.arrow's user hash table that holds `user_id` (buckets: a power of two)."""
    return zlib.crc32(user_id.encode()) & (buckets - 1)
