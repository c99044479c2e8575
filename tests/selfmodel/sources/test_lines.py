"""read_line_blocks: physical lines with true byte offsets and line numbers, problems marked per line."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
from pathlib import Path

import pytest

from selfmodel.sources import lines as lines_module
from selfmodel.sources.base import FileRead, UnsupportedCompression
from selfmodel.sources.lines import read_line_blocks


def read_all(path: Path, max_record_bytes: int = 1_000, start_offset: int = 0, start_line: int = 0):
    """Every line as (line_no, offset, text, raw bytes or None, problem or None), plus the FileRead."""
    read = FileRead(path=path, start_offset=start_offset, start_line=start_line)
    rows, unterminated = [], []
    for block in read_line_blocks(read, max_record_bytes):
        for index, text in enumerate(block.texts):
            rows.append((
                block.first_line_no + index,
                block.offsets[index],
                text,
                block.raw[index] if block.raw is not None else None,
                block.problems[index] if block.problems is not None else None,
            ))
        unterminated.append(block.unterminated_last)
    return rows, unterminated, read


def test_offsets_and_line_numbers_are_those_of_the_file(tmp_path: Path) -> None:
    data = b'{"a":1}\n\n{"b":22}\nxyz\n'
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)

    rows, unterminated, read = read_all(path)

    assert [(no, off, text) for no, off, text, _, _ in rows] == [
        (1, 0, '{"a":1}'), (2, 8, ""), (3, 9, '{"b":22}'), (4, 18, "xyz"),
    ]
    for _, offset, text, _, _ in rows:  # each offset points at the line's first byte
        assert data[offset:offset + len(text)] == text.encode()
    assert unterminated == [False]
    assert (read.consumed_bytes, read.resume_offset, read.resume_line) == (len(data), len(data), 4)


def test_lines_spanning_block_boundaries_keep_offsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny blocks force lines to be cut across reads: the result must not depend on the block size.
    monkeypatch.setattr(lines_module, "BLOCK_BYTES", 5)
    texts = ["first line", "", "x", "a much longer third line", "end"]
    data = ("\n".join(texts) + "\n").encode()
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)

    rows, _, read = read_all(path)

    assert [text for _, _, text, _, _ in rows] == texts
    assert [no for no, _, _, _, _ in rows] == [1, 2, 3, 4, 5]
    assert [off for _, off, _, _, _ in rows] == [0, 11, 12, 14, 39]
    assert read.consumed_bytes == len(data)


def test_bom_is_removed_from_the_first_line_only(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\xef\xbb\xbfone\n\xef\xbb\xbftwo\n")

    rows, _, _ = read_all(path)

    assert [text for _, _, text, _, _ in rows] == ["one", "\ufefftwo"]
    assert [off for _, off, _, _, _ in rows] == [0, 7]  # the BOM still counts in the offsets


def test_crlf_lines_keep_their_carriage_return_and_offsets(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"ab\r\ncd\r\n")

    rows, _, _ = read_all(path)

    assert [(no, off, text) for no, off, text, _, _ in rows] == [(1, 0, "ab\r"), (2, 4, "cd\r")]


def test_invalid_utf8_line_is_marked_with_its_exact_bytes(tmp_path: Path) -> None:
    bad = b'{"text":"caf\xe9"}'
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"ok":1}\n' + bad + b"\n" + b'{"ok":2}\n')

    rows, _, _ = read_all(path)

    assert rows[0][4] is None and rows[2][4] is None
    line_no, offset, text, raw, problem = rows[1]
    assert (line_no, offset) == (2, 9)
    assert raw == bad
    assert problem[0] == "invalid_utf8"
    assert "byte 12" in problem[1]
    assert text == '{"text":"caf\\xe9"}'  # readable, with the bad byte shown as \xNN


def test_every_undecodable_line_of_a_block_is_found_and_only_those(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Lines are checked a few at a time: bad lines first and last in such a window, two in a row, a sequence
    # cut by the line's end, an encoded surrogate, and good lines with multi-byte characters around them.
    monkeypatch.setattr(lines_module, "VALIDATE_LINES", 4)
    bad_lines = {0: b"\xff", 3: b"caf\xe9", 4: b"\xc3", 5: b"\xed\xa0\x80", 11: b"\x80tail", 12: b"\xe2\x82"}
    lines = [bad_lines.get(index, f"ok {index} caf\u00e9 \u65e5 \U0001f642".encode()) for index in range(13)]
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    rows, _, _ = read_all(path)

    assert [row[4][0] if row[4] else None for row in rows] == [
        "invalid_utf8" if index in bad_lines else None for index in range(13)]
    assert {index: rows[index][3] for index in bad_lines} == bad_lines


def test_nul_byte_line_is_marked_with_its_exact_bytes(tmp_path: Path) -> None:
    bad = b'{"t":"a\x00b"}'
    path = tmp_path / "f.jsonl"
    path.write_bytes(bad + b"\n")

    rows, _, _ = read_all(path)

    [(_, _, text, raw, problem)] = rows
    assert problem == ("nul_byte", "NUL byte at position 7")
    assert raw == bad
    assert "\x00" not in text and "\\x00" in text


def test_oversized_line_is_marked_and_its_neighbours_are_not(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"short\n" + b"y" * 50 + b"\nfine\n")

    rows, _, _ = read_all(path, max_record_bytes=20)

    assert [p[0] if p else None for _, _, _, _, p in rows] == [None, "record_too_large", None]
    assert rows[1][2] == "y" * 50 and rows[1][3] == b"y" * 50
    assert "50 bytes" in rows[1][4][1] and "max_record_bytes=20" in rows[1][4][1]


def test_a_line_of_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"z" * 20 + b"\n")

    rows, _, _ = read_all(path, max_record_bytes=20)

    assert rows[0][4] is None


def test_unterminated_last_line_is_yielded_but_resume_stays_before_it(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"one\ntwo\nthr")

    rows, unterminated, read = read_all(path)

    assert [(no, off, text) for no, off, text, _, _ in rows] == [(1, 0, "one"), (2, 4, "two"), (3, 8, "thr")]
    assert unterminated == [False, True]
    assert (read.consumed_bytes, read.resume_offset, read.resume_line) == (11, 8, 2)


def test_reading_from_an_offset_continues_the_line_numbers_and_hashes_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"one\ntwo\nthree\n")
    _, _, whole = read_all(path)

    rows, _, resumed = read_all(path, start_offset=8, start_line=2)

    assert [(no, off, text) for no, off, text, _, _ in rows] == [(3, 8, "three")]
    assert resumed.sha256 == whole.sha256  # the manifest hash covers the bytes before start_offset too


def test_empty_file_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"")

    rows, unterminated, read = read_all(path)

    assert rows == [] and unterminated == []
    assert (read.consumed_bytes, read.resume_offset, read.resume_line) == (0, 0, 0)


# -- compressed files ---------------------------------------------------------------------------------

COMPRESSORS = {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_a_compressed_file_is_read_as_its_text_whatever_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 compression: str) -> None:
    monkeypatch.setattr(lines_module, "BLOCK_BYTES", 7)  # lines cut across decompressed blocks
    text = b'{"a":1}\n\n{"b":22}\ncaf\xe9\nlast'
    plain, packed = tmp_path / "plain.jsonl", tmp_path / "packed.jsonl"  # no .gz: known by its first bytes
    plain.write_bytes(text)
    packed.write_bytes(COMPRESSORS[compression](text))

    expected, expected_unterminated, _ = read_all(plain)
    rows, unterminated, read = read_all(packed)

    # Decompressed offsets and line numbers, bad bytes marked, as in the plain file.
    assert [(no, off, text, problem) for no, off, text, _, problem in rows] == [
        (no, off, text, problem) for no, off, text, _, problem in expected]
    assert rows[3][4][0] == "invalid_utf8" and unterminated[-1] and expected_unterminated[-1]
    # The manifest describes the compressed file: its size and hash (a compressed file is never resumed).
    assert read.consumed_bytes == read.resume_offset == packed.stat().st_size
    assert read.sha256 == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert read.resume_line == 4


def test_a_truncated_gzip_file_gives_its_lines_and_one_unreadable_file_record(tmp_path: Path) -> None:
    lines = [f'{{"n":{n}}}'.encode() for n in range(2000)]
    packed = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "f.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])  # still being written, or cut off by a full disk

    rows, _, read = read_all(path)

    *good, (line_no, offset, text, raw, problem) = rows
    assert [row[2] for row in good] == [line.decode() for line in lines[: len(good)]] and len(good) > 100
    assert line_no == len(good) + 1 and offset == sum(len(line) + 1 for line in lines[: len(good)])
    assert problem[0] == "unreadable_file" and problem[1].startswith("the gzip data is broken after ")
    assert lines[len(good)].startswith(raw)  # what was decompressed of the cut line is kept
    assert read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("head, compression, advice", [
    (b"\x28\xb5\x2f\xfd\x04\x00", "zstd", "decompress it (zstd -d)"),
    (b"PK\x03\x04\x14\x00", "zip", "unzip it"),
])
def test_a_file_compressed_in_a_way_python_cannot_read_is_refused_in_one_line(tmp_path: Path, head: bytes,
                                                                              compression: str, advice: str) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(head + b"\x00" * 20)

    with pytest.raises(UnsupportedCompression) as refused:
        read_all(path)

    assert str(refused.value) == (f"{path} is {compression}-compressed, which selfmodel cannot read (it reads gzip, "
                                  f"bz2 and xz): {advice}, or recompress it with gzip")


def test_text_that_starts_like_a_compressed_file_is_still_text(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"BZh9,PK\nx,y\n")

    rows, _, _ = read_all(path)

    assert [text for _, _, text, _, _ in rows] == ["BZh9,PK", "x,y"]
