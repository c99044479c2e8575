"""CSV with a header row. Python's csv module reads the records so that a row with extra or missing
cells is seen exactly (and quarantined with its raw lines), and quoted cells may span lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from selfmodel.sources.base import Adapter, FileRead, Label, RecordBatchBuilder, expand_path
from selfmodel.sources.lines import BOM, read_line_blocks


class CsvHeaderError(ValueError):
    """The header row makes the whole file unreadable."""


def _parse_header(text: str, delimiter: str, file_label: str) -> list[str]:
    header = next(csv.reader([text.removeprefix(BOM)], delimiter=delimiter), [])
    header = [name.strip() for name in header]
    if not header or not any(header):
        raise CsvHeaderError(f"{file_label}: the first line (header) is empty")
    # Two columns of one name would be two values for one field: which one counts is anyone's guess.
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise CsvHeaderError(f"{file_label}: header repeats column(s) {duplicated}")
    return header


def _read_header(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.readline().decode("utf-8", errors="replace").rstrip("\r\n")


# A quoted cell may span lines, but not without end: past this many lines the row is malformed.
MAX_LINES_PER_ROW = 1000


class CsvAdapter(Adapter):
    appendable = True

    def discover(self) -> list[Path]:
        return expand_path(self.path, ("*.csv", "*.tsv"))

    def read(self, reads: list[FileRead], labels: list[Label]) -> Iterator[pa.Table]:
        builder = RecordBatchBuilder(self.chunk_records)
        delimiter = self.options.csv_delimiter
        for read in reads:
            file_label = read.label
            header = _parse_header(_read_header(read.path), delimiter, file_label) if read.start_offset > 0 else None
            pending: list[tuple[int, int, str]] = []  # lines of a row still open in a quoted cell

            def add_row(cells: list[str] | None, problem: tuple[str, str] | None) -> None:
                line_no, offset, _ = pending[0]
                raw_text = "\n".join(text for _, _, text in pending)
                doc = None
                if problem is None and cells is not None:
                    # An empty cell is an absent value, so defaults and "missing" checks apply. A row with too
                    # many or too few cells is quarantined, with the cells the header names as its document:
                    # not loaded, but whose it is stays readable (normalize_records.sql, selfmodel forget).
                    values = {name: cell for name, cell in zip(header, cells) if cell != ""}
                    doc = json.dumps(values, ensure_ascii=False)
                    if len(cells) > len(header):
                        problem = ("csv_extra_columns", f"{len(cells)} cells, the header has {len(header)}")
                    elif len(cells) < len(header):
                        problem = ("csv_missing_columns", f"{len(cells)} cells, the header has {len(header)}")
                builder.add(file=file_label, line_no=line_no, byte_offset=offset, raw_text=raw_text, doc=doc,
                            pre_reason=problem[0] if problem else None, pre_detail=problem[1] if problem else None)
                pending.clear()

            for block in read_line_blocks(read, self.max_record_bytes):
                problems = block.problems or [None] * len(block.texts)
                for index, (text, problem) in enumerate(zip(block.texts, problems)):
                    line_no, offset = block.first_line_no + index, block.offsets[index]
                    if header is None:
                        header = _parse_header(text or "", delimiter, file_label)
                        continue
                    if problem is not None:
                        # A line with bad bytes is its own record; a row it interrupts is cut short there.
                        if pending:
                            add_row(None, ("csv_malformed", f"row interrupted by an unreadable line {line_no}"))
                        builder.add(file=file_label, line_no=line_no, byte_offset=offset, raw_text=text,
                                    raw_bytes=block.raw[index], pre_reason=problem[0], pre_detail=problem[1])
                    elif not pending and text.strip() == "":
                        builder.add(file=file_label, line_no=line_no, byte_offset=offset, raw_text=text,
                                    pre_reason="blank_line", pre_detail="an empty line is not a CSV row")
                    else:
                        pending.append((line_no, offset, text))
                        try:
                            rows = list(csv.reader([t + "\n" for _, _, t in pending], delimiter=delimiter, strict=True))
                        except csv.Error as exc:
                            if "unexpected end of data" not in str(exc):
                                add_row(None, ("csv_malformed", str(exc)))
                            elif len(pending) >= MAX_LINES_PER_ROW:
                                add_row(None, ("csv_malformed", f"quoted cell still open after {MAX_LINES_PER_ROW} lines"))
                        else:
                            add_row(rows[0] if rows else [], None)
                    if builder.full:
                        yield builder.take()
            if pending:
                # The row may still be being written: when the file grows, read it again from its start.
                read.resume_offset, read.resume_line = pending[0][1], pending[0][0] - 1
                add_row(None, ("csv_malformed", "the file ends inside a quoted cell"))
        if len(builder):
            yield builder.take()
