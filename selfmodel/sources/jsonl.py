"""JSON Lines: one physical line is one record; DuckDB parses and validates the JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pyarrow as pa

from selfmodel.sources.base import RECORD_SCHEMA, Adapter, FileRead, Label, expand_path
from selfmodel.sources.lines import LineBlock, read_line_blocks


def block_table(block: LineBlock, file_label: str) -> pa.Table:
    """Arrow records for a block of lines whose text is itself the record (doc left NULL)."""
    count = len(block.texts)
    unterminated = [False] * count
    if block.unterminated_last:
        unterminated[-1] = True
    problems = block.problems or [None] * count
    return pa.Table.from_arrays(
        [
            pa.array([file_label] * count, pa.string()),
            pa.array(range(block.first_line_no, block.first_line_no + count), pa.int64()),
            pa.array(block.offsets, pa.int64()),
            pa.array(block.texts, pa.string()),
            pa.array(
                [raw if problem else None for raw, problem in zip(block.raw, problems)]
                if block.raw is not None else [None] * count,
                pa.binary(),
            ),
            pa.nulls(count, pa.string()),
            pa.array(unterminated, pa.bool_()),
            pa.array([p[0] if p else None for p in problems], pa.string()),
            pa.array([p[1] if p else None for p in problems], pa.string()),
        ],
        schema=RECORD_SCHEMA,
    )


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
