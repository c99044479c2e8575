"""Physical lines of a file, streamed in blocks with their byte offsets and line numbers.

Works block-wise rather than line-wise so a clean block costs a few C-level calls (split, decode)
instead of Python work per line; only a block with a problem (bad UTF-8, NUL bytes, an oversized
line) is looked at line by line. One physical line is one record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import accumulate
from typing import Iterator

from selfmodel.sources.base import FileRead, escape_raw

BLOCK_BYTES = 8 << 20
BOM = "\ufeff"
NUL = b"\x00"


@dataclass
class LineBlock:
    """Consecutive lines: texts[i] is None when the line could not be decoded as clean text."""

    first_line_no: int  # 1-based number of the first line
    offsets: list[int]
    texts: list[str | None]
    raw: list[bytes] | None  # the exact bytes, present only when some line has a problem
    problems: list[tuple[str, str] | None] | None  # (reason, detail) per line, or None when clean
    unterminated_last: bool = False


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


def _block(lines: list[bytes], first_offset: int, first_line_no: int, max_record_bytes: int,
           at_file_start: bool, unterminated_last: bool) -> LineBlock:
    offsets = list(accumulate((len(line) + 1 for line in lines[:-1]), initial=first_offset))
    joined = b"\n".join(lines)
    clean = b"\x00" not in joined and max(map(len, lines)) <= max_record_bytes
    texts: list[str | None]
    if clean:
        try:
            texts = joined.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            clean = False
    if not clean:
        texts, problems = [], []
        for line in lines:
            try:
                text: str | None = line.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            problem = _problem(line, text, max_record_bytes)
            problems.append(problem)
            texts.append(escape_raw(line) if problem else text)
    if at_file_start and texts and texts[0] and texts[0].startswith(BOM):
        texts[0] = texts[0][1:]
    return LineBlock(
        first_line_no=first_line_no,
        offsets=offsets,
        texts=texts,
        raw=None if clean else lines,
        problems=None if clean else problems,
        unterminated_last=unterminated_last,
    )


def read_line_blocks(read: FileRead, max_record_bytes: int) -> Iterator[LineBlock]:
    """Stream `read.path` from `read.start_offset`, filling in the manifest fields of `read`.

    The whole file is hashed (the part before start_offset too) so the manifest always holds the
    hash of every byte read so far; an unterminated last line is yielded but resume_offset stays
    before it, so when the file grows the completed line is read again whole.
    """
    digest = hashlib.sha256()
    offset, line_no = read.start_offset, read.start_line
    with open(read.path, "rb") as handle:
        remaining = read.start_offset
        while remaining > 0:
            block = handle.read(min(BLOCK_BYTES, remaining))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
        carry = b""
        while True:
            block = handle.read(BLOCK_BYTES)
            if not block:
                break
            digest.update(block)
            data = carry + block if carry else block
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            lines = data[:cut].split(b"\n")
            carry = data[cut + 1 :]
            yield _block(lines, offset, line_no + 1, max_record_bytes, offset == 0, False)
            offset += cut + 1
            line_no += len(lines)
        read.resume_offset, read.resume_line = offset, line_no
        if carry:
            yield _block([carry], offset, line_no + 1, max_record_bytes, offset == 0, True)
            offset += len(carry)
            line_no += 1
    read.consumed_bytes = offset
    read.sha256 = digest.hexdigest()
