"""How the extraction loop buffers observations before it writes them (issue 14: a refresh's memory)."""

from __future__ import annotations

import gc
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta, timezone

import pyarrow as pa

from selfmodel.beliefs.observe import OBSERVATION_COLUMNS, ObservationWriter
from warehouse.db import connect

AT = datetime(2024, 1, 1, tzinfo=timezone.utc)


def page_of_observations(first: int, count: int) -> dict[str, list]:
    """Columns as an extraction worker returns them: new Python objects for every row."""
    columns: dict[str, list] = {name: [] for name in OBSERVATION_COLUMNS}
    for i in range(first, first + count):
        for name, value in (("user_id", f"u{i % 997}"), ("key", ("topic", "role", "fact")[i % 3]),
                            ("value", f"value {i % 101}"), ("weight", 0.5 + i % 7), ("observed_at", AT + timedelta(seconds=i)),
                            ("event_id", f"b1-{i // 3}"), ("source", "bench"), ("extractor", "topic"),
                            ("extractor_version", "1"), ("batch_id", "batch-1"), ("evidence_kind", "topic:message"),
                            ("evidence_unit", f"event|b1-{i // 3}")):
            columns[name].append(value)
    return columns


def test_buffered_observations_are_held_compactly_until_written(make_settings) -> None:
    settings = make_settings(sources=[])
    con = connect(settings.warehouse_path)
    writer = ObservationWriter(con, extract_run=1)
    per_batch: Counter = Counter()
    pages, rows = 4, 5_000
    writer.add_columns(page_of_observations(0, 1), Counter())  # what a first page imports is not a buffer
    writer.flush()
    gc.collect()
    arrow_before = pa.total_allocated_bytes()
    tracemalloc.start()
    for page in range(pages):
        writer.add_columns(page_of_observations(page * rows, rows), per_batch)  # the page is dropped after
    gc.collect()
    python_held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held_per_row = (python_held + pa.total_allocated_bytes() - arrow_before) / (pages * rows)
    # As twelve Python objects a row takes ~400 bytes; as Arrow, ~125.
    assert held_per_row < 200, f"{held_per_row:.0f} bytes per buffered observation"

    writer.flush()
    assert writer.written == 1 + pages * rows and per_batch == {"batch-1": pages * rows}
    [(stored, users, latest)] = con.execute(
        "select count(*), count(distinct user_id), max(observed_at) from observations where extract_run = 1").fetchall()
    assert (stored, users, latest) == (1 + pages * rows, 997, AT + timedelta(seconds=pages * rows - 1))
    con.close()
