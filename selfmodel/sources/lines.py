"""Physical lines of a file, streamed in blocks with their byte offsets and line numbers.

Works block-wise rather than line-wise so a block costs a few C-level calls (split, find, validate)
instead of Python work per line; only the lines with a problem (bad UTF-8, NUL bytes, an oversized
line) are looked at one by one, so a dirty file is nearly as fast as a clean one. One physical line
is one record.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from codecs import utf_8_decode
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate
from typing import BinaryIO, Iterator

from selfmodel.sources.base import (DECOMPRESSION_ERRORS, CountingReader, FileRead, escape_raw, open_decompressed,
                                    refuse_unreadable_compression)

BLOCK_BYTES = 8 << 20
# Lines whose UTF-8 is checked in one decoder call (see _undecodable_lines).
VALIDATE_LINES = 256
BOM = "\ufeff"
BOM_BYTES = BOM.encode("utf-8")
NUL = b"\x00"
_PLUS_NEWLINE = (1).__add__


@dataclass
class LineBlock:
    """Consecutive lines with their exact bytes; `texts` and `raw` are derived from them.

    texts[i] is the line as text; a line with a problem (bad UTF-8, NUL bytes, oversized) has its
    bytes shown readably instead (see escape_raw). A BOM that starts the file is not part of texts[0].
    """

    first_line_no: int  # 1-based number of the first line
    offsets: list[int]
    lines: list[bytes]  # the exact bytes of each line, without its newline
    problems: list[tuple[str, str] | None] | None  # (reason, detail) per line, or None when clean
    unterminated_last: bool = False
    at_file_start: bool = False

    @property
    def raw(self) -> list[bytes] | None:
        """The exact bytes, present only when some line has a problem."""
        return None if self.problems is None else self.lines

    @cached_property
    def texts(self) -> list[str]:
        joined = b"\n".join(self.lines)
        # Undecodable bytes only occur in problem lines, whose text is replaced below.
        texts = joined.decode("utf-8", "surrogateescape" if self.problems else "strict").split("\n")
        for index in self._problem_indexes():
            texts[index] = escape_raw(self.lines[index])
        if self.at_file_start and texts and texts[0] and texts[0].startswith(BOM):
            texts[0] = texts[0][1:]
        return texts

    def text_bytes(self) -> list[bytes]:
        """texts encoded as UTF-8, built from the lines' bytes without decoding the clean ones."""
        encoded = list(self.lines)
        for index in self._problem_indexes():
            encoded[index] = escape_raw(self.lines[index]).encode("utf-8")
        if self.at_file_start and encoded and encoded[0].startswith(BOM_BYTES):
            encoded[0] = encoded[0][len(BOM_BYTES) :]
        return encoded

    def _problem_indexes(self) -> list[int]:
        if self.problems is None:
            return []
        return [index for index, problem in enumerate(self.problems) if problem]


def _problem(line: bytes, text: str | None, max_record_bytes: int) -> tuple[str, str] | None:
    if len(line) > max_record_bytes:
        return ("record_too_large", f"{len(line)} bytes; the limit is ingest.max_record_bytes={max_record_bytes}")
    if text is None:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ("invalid_utf8", f"byte {exc.start}: {exc.reason}")
    if b"\x00" in line:
        return ("nul_byte", f"NUL byte at position {line.index(NUL)}")
    return None


def _undecodable_lines(data: bytes, starts: list[int]) -> set[int]:
    """Indexes of the lines that are not valid UTF-8.

    Python's decoder checks VALIDATE_LINES lines at a time (C, no copy of the bytes): it stops at the
    first bad byte, which names its line, and the check resumes at the next line. A window keeps a
    dirty block linear: resuming over the whole rest of the block after every bad line cost more than
    the reading itself.
    """
    if data.isascii():
        return set()
    view = memoryview(data)
    bad: set[int] = set()
    first, count = 0, len(starts)
    while first < count:
        end = min(first + VALIDATE_LINES, count)
        try:
            utf_8_decode(view[starts[first] : starts[end] if end < count else len(data)], "strict", True)
            first = end
        except UnicodeDecodeError as exc:
            index = bisect_right(starts, starts[first] + exc.start) - 1
            bad.add(index)
            first = index + 1
    return bad


def _block(data: bytes, lines: list[bytes], first_offset: int, first_line_no: int, max_record_bytes: int,
           at_file_start: bool, unterminated_last: bool) -> LineBlock:
    """`data` is `lines` joined by newlines. Problem lines are found by scans of the whole block, so
    a block costs the same few C-level passes however many of its lines are bad."""
    # Where each line starts within the block, then in the file (map and accumulate stay in C).
    starts = list(accumulate(map(_PLUS_NEWLINE, map(len, lines[:-1])), initial=0))
    offsets = list(map(first_offset.__add__, starts)) if first_offset else starts
    bad: set[int] = set()
    if max(map(len, lines)) > max_record_bytes:
        bad.update(index for index, line in enumerate(lines) if len(line) > max_record_bytes)
    position = data.find(NUL)
    while position >= 0:
        index = bisect_right(starts, position) - 1
        bad.add(index)
        position = data.find(NUL, starts[index + 1]) if index + 1 < len(starts) else -1
    undecodable = _undecodable_lines(data, starts)
    bad.update(undecodable)
    problems: list[tuple[str, str] | None] | None = None
    if bad:
        problems = [None] * len(lines)
        for index in bad:
            # _problem checks in a fixed order (size, UTF-8, NUL); tell it whether the line decodes.
            problems[index] = _problem(lines[index], None if index in undecodable else "", max_record_bytes)
    return LineBlock(
        first_line_no=first_line_no,
        offsets=offsets,
        lines=lines,
        problems=problems,
        unterminated_last=unterminated_last,
        at_file_start=at_file_start,
    )


class _StreamBroken(Exception):
    """A compressed file's data ends early or is corrupt."""


def read_line_blocks(read: FileRead, max_record_bytes: int) -> Iterator[LineBlock]:
    """Stream `read.path` from `read.start_offset`, filling in the manifest fields of `read`.

    The whole file is hashed (the part before start_offset too) so the manifest always holds the
    hash of every byte read so far; an unterminated last line is yielded but resume_offset stays
    before it, so when the file grows the completed line is read again whole.

    A gzip, bz2 or xz file (known by its first bytes) is read decompressed and always whole: offsets
    and line numbers are those of the decompressed text, while the manifest gets the compressed file's
    size and hash (it cannot resume inside a compressed stream, so a changed one is read again).
    """
    compression = refuse_unreadable_compression(read.path, read.label or str(read.path))
    if compression is not None:
        yield from _decompressed_line_blocks(read, max_record_bytes, compression)
        return
    digest = hashlib.sha256()
    with open(read.path, "rb") as handle:
        remaining = read.start_offset
        while remaining > 0:
            block = handle.read(min(BLOCK_BYTES, remaining))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
        yield from _split_lines(_hashed_blocks(handle, digest), read, read.start_offset, read.start_line,
                                max_record_bytes)
    read.sha256 = digest.hexdigest()


def _decompressed_line_blocks(read: FileRead, max_record_bytes: int, compression: str) -> Iterator[LineBlock]:
    with open(read.path, "rb", buffering=0) as raw:
        counting = CountingReader(raw)
        with open_decompressed(counting, compression) as handle:
            yield from _split_lines(_decompressed_blocks(handle, counting, compression), read, 0, 0,
                                    max_record_bytes)
            while counting.read(1 << 20):  # bytes after a broken stream still count for the manifest's hash
                pass
    read.consumed_bytes = read.resume_offset = counting.count
    read.sha256 = counting.digest.hexdigest()


def _hashed_blocks(handle: BinaryIO, digest) -> Iterator[bytes]:
    while True:
        block = handle.read(BLOCK_BYTES)
        if not block:
            return
        digest.update(block)
        yield block


def _decompressed_blocks(handle: BinaryIO, counting: CountingReader, compression: str) -> Iterator[bytes]:
    """Blocks of about BLOCK_BYTES, gathered piece by piece so a break loses nothing decompressed before it."""
    pieces: list[bytes] = []
    size = 0
    while True:
        try:
            piece = handle.read1(min(1 << 16, BLOCK_BYTES))
        except DECOMPRESSION_ERRORS as exc:
            if counting.raw_failed:
                raise
            if pieces:
                yield b"".join(pieces)
            raise _StreamBroken(f"the {compression} data is broken after {counting.count} compressed bytes: "
                                f"{exc}") from exc
        if piece:
            pieces.append(piece)
            size += len(piece)
        if size >= BLOCK_BYTES or (not piece and pieces):
            yield b"".join(pieces)
            pieces, size = [], 0
        if not piece:
            return


def _split_lines(blocks: Iterator[bytes], read: FileRead, offset: int, line_no: int,
                 max_record_bytes: int) -> Iterator[LineBlock]:
    """Cut a stream of byte blocks into LineBlocks, starting at `offset` after line `line_no`."""
    carry = b""
    broken = None
    try:
        for block in blocks:
            data = carry + block if carry else block
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            complete = data[:cut]
            lines = complete.split(b"\n")
            carry = data[cut + 1 :]
            yield _block(complete, lines, offset, line_no + 1, max_record_bytes, offset == 0, False)
            offset += cut + 1
            line_no += len(lines)
    except _StreamBroken as exc:
        broken = exc
    read.resume_offset, read.resume_line = offset, line_no
    if broken is not None:
        # One record says the rest is unreadable, keeping the part of a line decompressed before the break.
        yield LineBlock(first_line_no=line_no + 1, offsets=[offset], lines=[carry],
                        problems=[("unreadable_file", str(broken))], at_file_start=offset == 0)
        offset += len(carry)
        line_no += 1
    elif carry:
        yield _block(carry, [carry], offset, line_no + 1, max_record_bytes, offset == 0, True)
        offset += len(carry)
        line_no += 1
    read.consumed_bytes = offset
