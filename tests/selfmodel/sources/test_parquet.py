"""ParquetAdapter: each row becomes one JSON document, nested and typed columns included."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from selfmodel.settings import SourceSettings
from selfmodel.sources.base import RECORD_SCHEMA, FileRead
from selfmodel.sources.parquet import ParquetAdapter


def read_rows(path: Path, *, chunk_records: int = 1000) -> tuple[list[pa.Table], list[dict], FileRead]:
    options = SourceSettings(name="p", format="parquet", path=str(path))
    source = ParquetAdapter(path, options, chunk_records=chunk_records, max_record_bytes=1000)
    read = FileRead(path=path, label="f.parquet")
    chunks = list(source.read([read], []))
    assert all(chunk.schema == RECORD_SCHEMA for chunk in chunks)
    return chunks, [row for chunk in chunks for row in chunk.to_pylist()], read


def test_rows_become_json_documents_with_typed_and_nested_values(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({
        "event_id": ["e1", "e2"],
        "user_id": pa.array([7, 8], pa.int64()),
        "occurred_at": pa.array([datetime(2024, 1, 1, 12, tzinfo=timezone.utc), None], pa.timestamp("us", tz="UTC")),
        "rating": pa.array([4.5, None], pa.float64()),
        "tags": pa.array([["a", "b"], []], pa.list_(pa.string())),
        "meta": pa.array([{"ts": "x", "n": 1}, {"ts": "y", "n": 2}]),
    }), path)

    _, rows, _ = read_rows(path)

    docs = [json.loads(row["doc"]) for row in rows]
    assert docs[0]["event_id"] == "e1" and docs[0]["user_id"] == 7 and docs[0]["rating"] == 4.5
    assert docs[0]["tags"] == ["a", "b"] and docs[0]["meta"] == {"ts": "x", "n": 1}
    assert datetime.fromisoformat(docs[0]["occurred_at"]) == datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    assert docs[1]["occurred_at"] is None and docs[1]["tags"] == []
    # The raw text of a Parquet row is its JSON document; there is no byte offset, line_no is the row number.
    assert [(r["line_no"], r["byte_offset"], r["raw_text"] == r["doc"], r["pre_reason"]) for r in rows] == [
        (1, None, True, None), (2, None, True, None)]


def test_row_numbers_continue_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"n": list(range(7))}), path, row_group_size=3)

    chunks, rows, read = read_rows(path, chunk_records=3)

    assert [chunk.num_rows for chunk in chunks] == [3, 3, 1]
    assert [(r["line_no"], json.loads(r["doc"])["n"]) for r in rows] == [(i + 1, i) for i in range(7)]
    assert read.records == 7


def test_the_manifest_fields_describe_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(pa.table({"n": [1]}), path)

    _, _, read = read_rows(path)

    data = path.read_bytes()
    assert (read.consumed_bytes, read.resume_offset) == (len(data), len(data))
    assert read.sha256 == hashlib.sha256(data).hexdigest()


def test_an_unreadable_file_is_one_record_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")

    _, rows, _ = read_rows(path)

    [row] = rows
    assert (row["file"], row["line_no"], row["pre_reason"]) == ("f.parquet", 1, "unreadable_file")
    assert row["pre_detail"].startswith("after 0 rows: ")


def test_discover_finds_parquet_and_pq_files(tmp_path: Path) -> None:
    for name in ("b.parquet", "a.pq", "c.csv"):
        (tmp_path / name).write_bytes(b"")
    source = ParquetAdapter(tmp_path, SourceSettings(name="p", format="parquet", path="."),
                            chunk_records=10, max_record_bytes=10)

    assert [p.name for p in source.discover()] == ["a.pq", "b.parquet"]
