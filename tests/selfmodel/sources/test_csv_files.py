"""CsvAdapter: rows with a header, quoted cells across lines, and each malformed row kept whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfmodel.settings import SourceSettings
from selfmodel.sources.base import FileRead
from selfmodel.sources.csv_files import CsvAdapter, CsvHeaderError


def read_rows(path: Path, read: FileRead | None = None, *, delimiter: str = ",",
              max_record_bytes: int = 1000) -> list[dict]:
    options = SourceSettings(name="c", format="csv", path=str(path), csv_delimiter=delimiter)
    source = CsvAdapter(path, options, chunk_records=1000, max_record_bytes=max_record_bytes)
    labels: list = []
    rows = [row for chunk in source.read([read or FileRead(path=path)], labels) for row in chunk.to_pylist()]
    assert labels == []
    return rows


def summary(rows: list[dict]) -> list[tuple]:
    """(line_no, pre_reason, parsed cells or None) per record."""
    return [(r["line_no"], r["pre_reason"], json.loads(r["doc"]) if r["doc"] else None) for r in rows]


def test_rows_become_documents_keyed_by_the_header(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"event_id,user_id,text\ne1,u1,hello\ne2,u2,\n")

    rows = read_rows(path)

    assert summary(rows) == [
        (2, None, {"event_id": "e1", "user_id": "u1", "text": "hello"}),
        (3, None, {"event_id": "e2", "user_id": "u2"}),  # an empty cell is an absent value
    ]
    assert [(r["byte_offset"], r["raw_text"]) for r in rows] == [(22, "e1,u1,hello"), (34, "e2,u2,")]


def test_bom_and_crlf_do_not_leak_into_names_or_values(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'\xef\xbb\xbfid,user_id\r\n1,u\r\n"2","v ""q"""\r\n')

    rows = read_rows(path)

    assert summary(rows) == [(2, None, {"id": "1", "user_id": "u"}), (3, None, {"id": "2", "user_id": 'v "q"'})]


def test_extra_and_missing_columns_are_marked_with_the_counts(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n1,2,3\n1\n1,2\n")

    rows = read_rows(path)

    # A bad row keeps the cells its header names as its document: never loaded, but whose it is stays readable.
    assert summary(rows) == [(2, "csv_extra_columns", {"a": "1", "b": "2"}), (3, "csv_missing_columns", {"a": "1"}),
                             (4, None, {"a": "1", "b": "2"})]
    assert rows[0]["pre_detail"] == "3 cells, the header has 2"
    assert rows[1]["pre_detail"] == "1 cells, the header has 2"
    assert rows[0]["raw_text"] == "1,2,3"


def test_a_quoted_cell_may_span_lines_and_the_row_keeps_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'id,text\n1,"first\nsecond, still\n""third"""\n2,after\n')

    rows = read_rows(path)

    assert summary(rows) == [(2, None, {"id": "1", "text": 'first\nsecond, still\n"third"'}),
                             (5, None, {"id": "2", "text": "after"})]
    assert rows[0]["byte_offset"] == 8
    assert rows[0]["raw_text"] == '1,"first\nsecond, still\n""third"""'


def test_an_unclosed_quote_swallows_the_rest_and_is_one_malformed_record(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'id,text\n1,ok\n2,"never closed\n3,x\n4,y\n')

    rows = read_rows(path)

    assert summary(rows) == [(2, None, {"id": "1", "text": "ok"}), (3, "csv_malformed", None)]
    assert rows[1]["pre_detail"] == "the file ends inside a quoted cell"
    assert rows[1]["raw_text"] == '2,"never closed\n3,x\n4,y'


def test_text_after_a_closing_quote_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'id,text\n1,"x"y\n2,z\n')

    rows = read_rows(path)

    assert summary(rows) == [(2, "csv_malformed", None), (3, None, {"id": "2", "text": "z"})]


def test_blank_lines_are_their_own_records(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"id\n1\n\n  \r\n2\n")

    rows = read_rows(path)

    assert summary(rows) == [(2, None, {"id": "1"}), (3, "blank_line", None), (4, "blank_line", None),
                             (5, None, {"id": "2"})]


def test_a_bad_line_inside_a_quoted_row_cuts_the_row_and_is_kept_with_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'id,text\n1,"open\n\xff\x00\n2,b\n')

    rows = read_rows(path)

    assert summary(rows) == [(2, "csv_malformed", None), (3, "invalid_utf8", None), (4, None, {"id": "2", "text": "b"})]
    assert rows[0]["pre_detail"] == "row interrupted by an unreadable line 3"
    assert rows[1]["raw_bytes"] == b"\xff\x00"


def test_an_oversized_line_is_marked(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"id,text\n1," + b"x" * 100 + b"\n2,y\n")

    rows = read_rows(path, max_record_bytes=50)

    assert summary(rows) == [(2, "record_too_large", None), (3, None, {"id": "2", "text": "y"})]


def test_other_delimiters_are_honoured(tmp_path: Path) -> None:
    path = tmp_path / "f.tsv"
    path.write_bytes(b"id\ttext\n1\ta,b\n")

    rows = read_rows(path, delimiter="\t")

    assert summary(rows) == [(2, None, {"id": "1", "text": "a,b"})]


def test_a_resumed_read_takes_the_header_from_the_top_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\r\n1,a\r\n2,b\r\n")

    rows = read_rows(path, FileRead(path=path, start_offset=len(b"\xef\xbb\xbfid,text\r\n1,a\r\n"), start_line=2))

    assert summary(rows) == [(3, None, {"id": "2", "text": "b"})]


@pytest.mark.parametrize("header, problem", [(b"id,id\n1,2\n", "repeats column"), (b"\n1,2\n", "empty")])
def test_an_unusable_header_fails_the_file(tmp_path: Path, header: bytes, problem: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(header)

    with pytest.raises(CsvHeaderError, match=problem):
        read_rows(path)


def test_a_row_left_open_at_the_end_is_read_again_whole_once_the_file_grows(tmp_path: Path) -> None:
    # A writer flushed the first line of a multi-line row; the rest arrives later.
    path = tmp_path / "f.csv"
    path.write_bytes(b'id,text\n1,a\n2,"multi\n')
    first = FileRead(path=path)
    assert summary(read_rows(path, first)) == [(2, None, {"id": "1", "text": "a"}), (3, "csv_malformed", None)]

    with open(path, "ab") as handle:
        handle.write(b'line"\n3,c\n')
    rows = read_rows(path, FileRead(path=path, start_offset=first.resume_offset, start_line=first.resume_line))

    assert summary(rows) == [(3, None, {"id": "2", "text": "multi\nline"}), (5, None, {"id": "3", "text": "c"})]
