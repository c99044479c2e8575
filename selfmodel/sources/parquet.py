"""Parquet: each row is one record, turned into a JSON document by DuckDB (nested columns included)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from selfmodel.sources.base import RECORD_SCHEMA, Adapter, FileRead, Label, RecordBatchBuilder, expand_path, file_sha256


class ParquetAdapter(Adapter):
    appendable = False

    def discover(self) -> list[Path]:
        # Parquet compresses inside the file; a compressed Parquet file is no Parquet file.
        return expand_path(self.path, ("*.parquet", "*.pq"), compressed=False)

    def read(self, reads: list[FileRead], labels: list[Label]) -> Iterator[pa.Table]:
        converter = duckdb.connect()
        converter.execute("set TimeZone = 'UTC'")
        for read in reads:
            read.sha256 = file_sha256(read.path)
            read.consumed_bytes = read.resume_offset = read.path.stat().st_size
            row = 0
            try:
                batches = pq.ParquetFile(read.path).iter_batches(batch_size=self.chunk_records)
                for batch in batches:
                    documents = converter.sql("select to_json(b) as doc from batch b").to_arrow_table()
                    count = documents.num_rows
                    docs = documents.column("doc").cast(pa.string())
                    yield pa.Table.from_arrays(
                        [
                            pa.array([read.label] * count, pa.string()),
                            pa.array(range(row + 1, row + count + 1), pa.int64()),
                            pa.nulls(count, pa.int64()),
                            docs,
                            pa.nulls(count, pa.binary()),
                            docs,
                            pa.array([False] * count),
                            pa.nulls(count, pa.string()),
                            pa.nulls(count, pa.string()),
                            pa.nulls(count, pa.int64()),
                            pa.nulls(count, pa.int64()),
                        ],
                        schema=RECORD_SCHEMA,
                    )
                    row += count
            except (pa.ArrowException, OSError, duckdb.Error) as exc:
                builder = RecordBatchBuilder(1)
                builder.add(file=read.label, line_no=row + 1, byte_offset=None, raw_text="",
                            pre_reason="unreadable_file", pre_detail=f"after {row} rows: {exc}")
                yield builder.take()
            read.records = row
        converter.close()
