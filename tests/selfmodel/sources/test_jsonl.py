"""JsonlAdapter: one physical line is one record; the adapter marks only what it alone can see."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from selfmodel.settings import SourceSettings
from selfmodel.sources.base import RECORD_SCHEMA, FileRead
from selfmodel.sources import lines as lines_module
from selfmodel.sources.jsonl import JsonlAdapter


def adapter(path: Path, *, chunk_records: int = 1000, max_record_bytes: int = 1000) -> JsonlAdapter:
    options = SourceSettings(name="j", format="jsonl", path=str(path))
    return JsonlAdapter(path, options, chunk_records=chunk_records, max_record_bytes=max_record_bytes)


def read_rows(source: JsonlAdapter, reads: list[FileRead]) -> tuple[list[pa.Table], list[dict]]:
    labels: list = []
    chunks = list(source.read(reads, labels))
    assert labels == []  # JSONL carries no profile data
    for chunk in chunks:
        assert chunk.schema == RECORD_SCHEMA
    return chunks, [row for chunk in chunks for row in chunk.to_pylist()]


def test_discover_lists_jsonl_ndjson_and_json_files_sorted(tmp_path: Path) -> None:
    for name in ("b.jsonl", "a.ndjson", "c.json", "notes.txt", "d.csv"):
        (tmp_path / name).write_text("{}\n")

    found = adapter(tmp_path).discover()

    assert [p.name for p in found] == ["a.ndjson", "b.jsonl", "c.json"]


def test_discover_expands_a_glob(tmp_path: Path) -> None:
    (tmp_path / "day1").mkdir()
    (tmp_path / "day1" / "x.jsonl").write_text("{}\n")
    (tmp_path / "y.jsonl").write_text("{}\n")

    found = adapter(tmp_path / "**" / "*.jsonl").discover()

    assert sorted(p.relative_to(tmp_path).as_posix() for p in found) == ["day1/x.jsonl", "y.jsonl"]


def test_records_carry_file_line_offset_and_raw_text(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a":1}\n\xef\xbb\xbf\n{"b":2}\r\n')

    _, rows = read_rows(adapter(path), [FileRead(path=path, label="logs/f.jsonl")])

    assert [(r["file"], r["line_no"], r["byte_offset"], r["raw_text"]) for r in rows] == [
        ("logs/f.jsonl", 1, 0, '{"a":1}'),
        ("logs/f.jsonl", 2, 8, "\ufeff"),  # a BOM in the middle of a file is data, not a marker
        ("logs/f.jsonl", 3, 12, '{"b":2}\r'),
    ]
    # JSONL records are their raw text: no pre-parsed document, no adapter-level problem.
    assert {(r["doc"], r["pre_reason"], r["raw_bytes"], r["is_unterminated"]) for r in rows} == {
        (None, None, None, False)}


def test_problem_lines_keep_exact_bytes_and_clean_lines_do_not(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a":1}\n{"t":"\xff"}\n{"t":"\x00"}\n' + b"{" + b"x" * 40 + b"}\n")

    _, rows = read_rows(adapter(path, max_record_bytes=30), [FileRead(path=path)])

    assert [r["pre_reason"] for r in rows] == [None, "invalid_utf8", "nul_byte", "record_too_large"]
    assert [r["raw_bytes"] for r in rows] == [None, b'{"t":"\xff"}', b'{"t":"\x00"}', b"{" + b"x" * 40 + b"}"]


def test_only_an_unterminated_last_line_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')

    _, rows = read_rows(adapter(path), [FileRead(path=path)])

    assert [(r["line_no"], r["is_unterminated"]) for r in rows] == [(1, False), (2, False), (3, True)]


def test_small_blocks_are_grouped_into_chunks_of_about_chunk_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lines arrive in byte blocks; blocks are grouped until a chunk holds at least chunk_records rows
    # (so a chunk may exceed chunk_records by less than one block: memory is bounded by bytes too).
    monkeypatch.setattr(lines_module, "BLOCK_BYTES", 24)  # 2 or 3 lines of 9 bytes per block
    path = tmp_path / "f.jsonl"
    path.write_text("".join(f'{{"n":{n:02}}}\n' for n in range(25)))

    chunks, rows = read_rows(adapter(path, chunk_records=10), [FileRead(path=path)])

    assert [r["line_no"] for r in rows] == list(range(1, 26))
    sizes = [chunk.num_rows for chunk in chunks]
    assert len(sizes) == 3
    assert all(10 <= size < 10 + 3 for size in sizes[:-1])


def test_resumed_read_starts_at_the_offset_with_true_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":3}\n')

    _, rows = read_rows(adapter(path), [FileRead(path=path, start_offset=16, start_line=2)])

    assert [(r["line_no"], r["byte_offset"], r["raw_text"]) for r in rows] == [(3, 16, '{"a":3}')]


def test_several_files_are_read_in_order_and_each_read_is_filled_in(tmp_path: Path) -> None:
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    first.write_bytes(b'{"a":1}\n{"a":2}\n')
    second.write_bytes(b'{"b":1}')
    reads = [FileRead(path=first, label="1.jsonl"), FileRead(path=second, label="2.jsonl")]

    _, rows = read_rows(adapter(tmp_path), reads)

    assert [(r["file"], r["line_no"]) for r in rows] == [("1.jsonl", 1), ("1.jsonl", 2), ("2.jsonl", 1)]
    assert [(r.consumed_bytes, r.resume_offset, r.resume_line) for r in reads] == [(16, 16, 2), (7, 0, 0)]


def test_lines_duckdb_would_read_but_json_does_not_allow_are_marked(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a": 1,}\n{"t": "a, ]", "r": "NaN"}\n{"r": NaN}\n{"t": "\xff", "r": NaN}\n{"r": -Infinity}')

    _, rows = read_rows(adapter(path), [FileRead(path=path)])

    assert [(r["pre_reason"], r["pre_detail"]) for r in rows] == [
        ("malformed_json", "not valid JSON: trailing comma before '}' (at character 8)"),
        (None, None),  # only looks suspect: strings may hold anything
        ("malformed_json", "not valid JSON: NaN is not a JSON value"),
        ("invalid_utf8", "byte 7: invalid start byte"),  # a line keeps the first reason found
        # a last line without newline that strict JSON cannot read is, like any such line, truncated
        ("truncated_last_line", "the last line has no newline and is not complete JSON: -Infinity is not a JSON value"),
    ]
    assert [r["raw_text"] for r in rows][:3] == ['{"a": 1,}', '{"t": "a, ]", "r": "NaN"}', '{"r": NaN}']
