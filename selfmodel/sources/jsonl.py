"""JSON Lines: one physical line is one record; DuckDB parses and validates the JSON, after a strict screen
for what DuckDB accepts beyond the JSON standard (strict_json)."""

from __future__ import annotations

from itertools import accumulate
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from selfmodel.sources.base import RECORD_SCHEMA, Adapter, FileRead, Label, expand_path
from selfmodel.sources.lines import LineBlock, read_line_blocks
from selfmodel.sources.strict_json import strict_problem, suspect_lines


def block_table(block: LineBlock, file_label: str) -> pa.Table:
    """Arrow records for a block of lines whose text is itself the record (doc left NULL)."""
    count = len(block.offsets)
    unterminated = [False] * count
    if block.unterminated_last:
        unterminated[-1] = True
    raw: list[bytes | None] = [None] * count
    reasons: list[str | None] = [None] * count
    details: list[str | None] = [None] * count
    for index, problem in enumerate(block.problems or ()):
        if problem:
            raw[index] = block.lines[index]
            reasons[index], details[index] = problem
    texts = text_array(block)
    mark_non_standard_json(texts, unterminated, reasons, details)
    return pa.Table.from_arrays(
        [
            pa.array([file_label] * count, pa.string()),
            pa.array(range(block.first_line_no, block.first_line_no + count), pa.int64()),
            pa.array(block.offsets, pa.int64()),
            texts,
            pa.array(raw, pa.binary()),
            pa.nulls(count, pa.string()),
            pa.array(unterminated, pa.bool_()),
            pa.array(reasons, pa.string()),
            pa.array(details, pa.string()),
            pa.nulls(count, pa.int64()),
            pa.nulls(count, pa.int64()),
        ],
        schema=RECORD_SCHEMA,
    )


def mark_non_standard_json(texts: pa.Array, unterminated: list[bool], reasons: list[str | None],
                           details: list[str | None]) -> None:
    """Quarantine the lines DuckDB would read although they are not standard JSON (see strict_json).

    Under strict JSON an unterminated last line that does not parse is what normalize_records.sql calls
    truncated_last_line; any other such line is malformed_json. Lines already marked keep their reason.
    """
    for index in suspect_lines(texts):
        if reasons[index] is not None:
            continue
        problem = strict_problem(texts[index].as_py())
        if problem is None:
            continue
        if unterminated[index]:
            reasons[index], details[index] = (
                "truncated_last_line", f"the last line has no newline and is not complete JSON: {problem}")
        else:
            reasons[index], details[index] = "malformed_json", f"not valid JSON: {problem}"


def text_array(block: LineBlock) -> pa.Array:
    """block.texts as an Arrow string array, assembled from the lines' UTF-8 bytes.

    Clean lines are valid UTF-8 (read_line_blocks checked them), so their bytes are their text;
    this skips decoding every line to a Python str only for Arrow to encode it back.
    """
    encoded = block.text_bytes()
    values = b"".join(encoded)
    if len(values) >= 2**31:  # beyond 32-bit offsets: let Arrow build it from Python strings
        return pa.array(block.texts, pa.string())
    offsets = pa.array(accumulate(map(len, encoded), initial=0), pa.int32())
    return pa.StringArray.from_buffers(len(encoded), offsets.buffers()[1], pa.py_buffer(values))


def rebatch(tables: Iterator[pa.Table], chunk_records: int) -> Iterator[pa.Table]:
    """Group small tables into chunks of about `chunk_records` rows."""
    pending: list[pa.Table] = []
    rows = 0
    for table in tables:
        pending.append(table)
        rows += table.num_rows
        if rows >= chunk_records:
            yield pa.concat_tables(pending)
            pending, rows = [], 0
    if pending:
        yield pa.concat_tables(pending)


class JsonlAdapter(Adapter):
    appendable = True

    def discover(self) -> list[Path]:
        return expand_path(self.path, ("*.jsonl", "*.ndjson", "*.json"))

    def read(self, reads: list[FileRead], labels: list[Label]) -> Iterator[pa.Table]:
        for read in reads:
            blocks = read_line_blocks(read, self.max_record_bytes)
            yield from rebatch((block_table(b, read.label) for b in blocks), self.chunk_records)
