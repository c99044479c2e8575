"""Run the extractors over events not yet seen and store what they find as observations.

Incremental by ingest batch: a batch is extracted once (table `extracted_batches`), so a refresh
reads only new events. Each run gets a number (`extract_run`) that the belief fold uses to tell
observations it has already counted from new ones.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import multiprocessing
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from selfmodel.beliefs.extractors import EXTRACTOR_NAMES, build_extractors, load_yaml_mapping
from selfmodel.beliefs.extractors.base import EventView, Finding, TargetView
from selfmodel.settings import Settings
from warehouse.db import execute, load_sql, memory_limit_while, run

log = logging.getLogger("selfmodel.beliefs")

FETCH_ROWS = 20_000
# Below this many queued events per worker, starting processes costs more than it saves.
PARALLEL_MIN_EVENTS = 50_000
INSERT_ROWS = 200_000
# Contents whose findings a run of extraction remembers across pages (observations_of_page's `seen`): a few
# pages' worth, bounded so that a long refresh does not hold every text it read.
SEEN_CONTENTS = 100_000
# What one extraction worker process holds at its plateau (benchmarks/refresh.py, synthetic chat and the QC
# sample): ~90 MB of Python and imports, ~130 MB of language model, a page in flight and its results, and
# the content cache. While workers run, DuckDB's memory_limit is lowered by this much per worker, so that
# warehouse.memory_limit bounds the whole refresh and not only the DuckDB part of it.
WORKER_MEMORY_BYTES = 400 * 2**20
OBSERVATION_COLUMNS = ("user_id", "key", "value", "weight", "observed_at", "event_id", "source", "extractor",
                       "extractor_version", "batch_id", "evidence_kind", "evidence_unit")


@dataclass
class ExtractionReport:
    extract_run: int
    batches: int
    events: int
    observations: int


def enabled_extractors(settings: Settings) -> list:
    names = [name for name in EXTRACTOR_NAMES if settings.beliefs.extractor(name).enabled]
    beliefs = settings.beliefs
    return build_extractors(
        names,
        taxonomy_path=settings.resolve(beliefs.taxonomy_path) if beliefs.taxonomy_path else None,
        roles_path=settings.resolve(beliefs.roles_path) if beliefs.roles_path else None,
    )


def extractor_set_id(settings: Settings, extractors: list) -> str:
    """Names, versions, weights and lexicons of the extractors in use: observations made with another set differ.

    An edited topic taxonomy or role lexicon changes the id, so `extracted_batches` shows which batches were
    read with which lexicon (re-extract them with `selfmodel refresh --full`).
    """
    beliefs = settings.beliefs
    lexicons = {
        "taxonomy": load_yaml_mapping(settings.resolve(beliefs.taxonomy_path) if beliefs.taxonomy_path else None,
                                      "topics.yaml"),
        "roles": load_yaml_mapping(settings.resolve(beliefs.roles_path) if beliefs.roles_path else None, "roles.yaml"),
    }
    described = [(x.name, x.version, beliefs.extractor(x.name).weight) for x in extractors]
    return hashlib.sha256(json.dumps([described, lexicons], sort_keys=True).encode()).hexdigest()[:16]


def event_view(row: dict) -> EventView:
    target = None
    if row["target_user_id"] is not None:
        target = TargetView(
            user_id=row["target_user_id"], kind=row["target_kind"], text=row["target_text"],
            tags=tuple(row["target_tags"] or ()),
            attributes={"post_type": row["target_post_type"]} if row["target_post_type"] else {},
        )
    attributes = {key: row[key] for key in ("post_type", "vote_type") if row[key] is not None}
    return EventView(event_id=row["event_id"], user_id=row["user_id"], kind=row["kind"], text=row["text"],
                     tags=tuple(row["tags"] or ()), rating=row["rating"], attributes=attributes, target=target)


def observation_table(columns: dict[str, list]) -> pa.Table:
    return pa.table({
        **{name: pa.array(columns[name], pa.string()) for name in OBSERVATION_COLUMNS
           if name not in ("weight", "observed_at")},
        "weight": pa.array(columns["weight"], pa.float64()),
        "observed_at": pa.array(columns["observed_at"], pa.timestamp("us", tz="UTC")),
    })


class ObservationWriter:
    """Buffers observations as Arrow tables and bulk-inserts them.

    Each page's Python lists become an Arrow table as they arrive: a buffered observation takes ~125 bytes
    there against ~400 as twelve Python objects (issue 14: the writing process's share of a refresh's RSS).
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, extract_run: int) -> None:
        self.con = con
        self.extract_run = extract_run
        self.tables: list[pa.Table] = []
        self.buffered = 0
        self.written = 0

    def add_columns(self, columns: dict[str, list], per_batch: Counter) -> None:
        self.add_table(observation_table(columns), per_batch)

    def add_table(self, table: pa.Table, per_batch: Counter) -> None:
        """Observations as observations_of_table gives them."""
        self.tables.append(table)
        per_batch.update({count["values"]: count["counts"] for count in
                          table.column("batch_id").value_counts().to_pylist()})
        self.buffered += table.num_rows
        if self.buffered >= INSERT_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        # Read by the SQL as a local of this frame (DuckDB's replacement scan), not through con.register:
        # a registered view keeps its Arrow data until the refresh's transaction ends, so every page
        # extracted would stay in memory (13.7 M observations at 5 M events).
        new_observations = pa.concat_tables(self.tables)  # noqa: F841 (read by name in the SQL)
        self.con.execute(load_sql("insert_observations"), {"extract_run": self.extract_run}).fetchall()
        self.written += self.buffered
        self.tables, self.buffered = [], 0


def findings_the_target_adds(with_target: list[Finding], without_target: list[Finding]) -> list[Finding]:
    """The findings an event gives with its target beyond those it gave without (a multiset difference).

    A finding only given without the target cannot be taken back here; no extractor gives one (feedback
    is evidence only about what it rates), and `refresh --full` recomputes from scratch if one ever does.
    """
    left_over = Counter(without_target)
    added = []
    for finding in with_target:
        if left_over[finding] > 0:
            left_over[finding] -= 1
        else:
            added.append(finding)
    if +left_over:
        log.warning("findings given without a target but not with it stay as first extracted (refresh --full "
                    "drops them): %s", sorted(+left_over, key=repr))
    return added


def evidence_unit(row: dict, finding: Finding) -> str:
    """What repeated evidence is counted within (docs/reference.md "Belief model"): feedback credited to the rated
    post's author comes from that post (sixty upvotes on one answer are one unit); anything else from its
    session or thread, or from its own event when it has none."""
    if finding.user_id is not None and row.get("reply_to"):
        return f"post|{row['reply_to']}"
    if row.get("session_id"):
        return f"session|{row['session_id']}"
    return f"event|{row['event_id']}"


# Observation columns that are the event's own, the same for every observation of an event: taken from the page
# by row number (as Arrow, for a page read as Arrow) rather than copied observation by observation.
EVENT_COLUMNS = ("observed_at", "event_id", "source", "batch_id")


def observations_of_page(extractors: list, weights: dict[str, float], names: list[str], rows: list[tuple],
                         seen: dict[tuple, dict[str, list[Finding]]] | None = None) -> dict[str, list]:
    """Run the extractors over one page of queued events; the observations as columns (observations_of_table
    for a page read as Arrow)."""
    page = dict(zip(names, map(list, zip(*rows)))) if rows else {name: [] for name in names}
    columns, event_rows = _observations(extractors, weights, page, len(rows), seen)
    for name, source in (("observed_at", "occurred_at"), ("event_id", "event_id"), ("source", "source"),
                         ("batch_id", "batch_id")):
        values = page[source]
        columns[name] = [values[i] for i in event_rows]
    return columns


def observations_of_table(extractors: list, weights: dict[str, float], page: pa.Table,
                          seen: dict[tuple, dict[str, list[Finding]]] | None = None) -> pa.Table:
    """observations_of_page of a page read as Arrow, as an Arrow table (observation_table's columns). The
    columns each event gives all its observations (time, ids) are taken from the page, never made Python."""
    read = {name: page.column(name).to_pylist() for name in page.column_names
            if name not in ("occurred_at", "source", "batch_id")}
    columns, event_rows = _observations(extractors, weights, read, page.num_rows, seen)
    taken = pa.array(event_rows, pa.int64())
    from_page = {"observed_at": page.column("occurred_at").take(taken).cast(pa.timestamp("us", tz="UTC")),
                 "source": page.column("source").take(taken).cast(pa.string()),
                 "batch_id": page.column("batch_id").take(taken).cast(pa.string()),
                 "event_id": pa.array([read["event_id"][i] for i in event_rows], pa.string())}
    # observation_table's columns, in its order.
    return pa.table({
        **{name: from_page[name] if name in from_page else pa.array(columns[name], pa.string())
           for name in OBSERVATION_COLUMNS if name not in ("weight", "observed_at")},
        "weight": pa.array(columns["weight"], pa.float64()),
        "observed_at": from_page["observed_at"],
    })


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused: a page makes hundreds of thousands of objects (findings, tuples, strings)
    that hold no cycles, and collecting would walk every live one again and again (a quarter of the time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _observations(extractors: list, weights: dict[str, float], page: dict[str, list], count: int,
                  seen: dict[tuple, dict[str, list[Finding]]] | None) -> tuple[dict[str, list], list[int]]:
    with _no_cycle_collection():
        return _observations_of_columns(extractors, weights, page, count, seen)


def _observations_of_columns(extractors: list, weights: dict[str, float], page: dict[str, list], count: int,
                             seen: dict[tuple, dict[str, list[Finding]]] | None) -> tuple[dict[str, list], list[int]]:
    """The observations of a page given as column lists, without EVENT_COLUMNS; and the page row of each.

    The same observations, row for row, as calling each extractor on each event (tests/selfmodel/beliefs/
    test_columnar_extraction.py checks it), but with less work: an extractor marked `content_only` (its
    findings on an event without a target depend on the event's content, never on its ids or time) runs
    once per distinct content of the page ("ok thanks" said by a thousand users is read once), and one with
    `findings_of_many` reads all those contents in one call (language: the model for the whole page at once).
    Feedback with a target (or queued again for one), and extractors without the mark, run event by event.
    `seen` carries the content_only findings of earlier pages to later ones (pass one dict per run and set of
    extractors; it is emptied when it reaches SEEN_CONTENTS)."""
    columns: dict[str, list] = {name: [] for name in OBSERVATION_COLUMNS if name not in EVENT_COLUMNS}
    event_rows: list[int] = []
    if not count:
        return columns, event_rows
    names = list(page)
    # Events without a target, by content: everything an EventView holds but its ids.
    content_of: dict[tuple, int] = {}
    first_rows: list[int] = []  # per content, the first row that has it
    content_index: list[int] = []  # per row; -1: read event by event (it has a target, or is queued for one)
    for i, (target_user, target_arrived) in enumerate(zip(page["target_user_id"], page["target_arrived"])):
        if target_user is not None or target_arrived:
            content_index.append(-1)
            continue
        key = (page["kind"][i], page["text"][i], tuple(page["tags"][i] or ()), page["rating"][i],
               page["post_type"][i], page["vote_type"][i])
        index = content_of.get(key)
        if index is None:
            index = content_of[key] = len(first_rows)
            first_rows.append(i)
        content_index.append(index)
    content_keys = list(content_of)
    seen = {} if seen is None else seen
    if len(seen) + len(content_keys) > SEEN_CONTENTS:
        seen.clear()
    new = [index for index, key in enumerate(content_keys) if key not in seen]
    new_contents = [event_view({name: page[name][first_rows[index]] for name in names}) for index in new]
    by_content: dict[str, list[list[Finding]]] = {}
    one_by_one = [x for x in extractors if getattr(x, "content_only", False) and not hasattr(x, "findings_of_many")]
    for extractor in one_by_one:
        by_content[extractor.name] = []
    # Content by content, so that each text is cleaned and split once (text.py caches the last few).
    for event in new_contents:
        for extractor in one_by_one:
            by_content[extractor.name].append(extractor(event))
    for extractor in extractors:
        if getattr(extractor, "content_only", False) and hasattr(extractor, "findings_of_many"):
            by_content[extractor.name] = extractor.findings_of_many(new_contents)
    # Remembered compactly, a tuple in by_content's order (the same on every page of a run), with every
    # "found nothing" the one empty tuple: a dict of lists per content made the cache ~150 MB per worker.
    cached = list(by_content.values())
    for position, index in enumerate(new):
        seen[content_keys[index]] = tuple(tuple(found[position]) for found in cached)
    by_content = {name: [seen[key][slot] for key in content_keys] for slot, name in enumerate(by_content)}

    # What each content's findings add to every row of that content, prepared once: per extractor, and when
    # every extractor is content_only and no finding names another user, as one block of columns per content.
    prepared: dict[str, list[list[tuple]]] = {
        name: [[(finding, finding.key, finding.value, finding.weight * weights[name],
                 f"{name}:{finding.kind or content_keys[index][0]}") for finding in findings]
               for index, findings in enumerate(found)]
        for name, found in by_content.items()}
    blocks: list[tuple | None] = [None] * len(content_keys)
    if len(prepared) == len(extractors):
        for index in range(len(content_keys)):
            items = [(item, extractor) for extractor in extractors for item in prepared[extractor.name][index]]
            if all(item[0].user_id is None for item, _ in items):
                blocks[index] = (len(items), [item[1] for item, _ in items], [item[2] for item, _ in items],
                                 [item[3] for item, _ in items], [item[4] for item, _ in items],
                                 [x.name for _, x in items], [x.version for _, x in items])
    about_the_author = Finding("", "", 0.0)  # evidence_unit of a finding about the event's own user
    (user_ids, keys, values_, weights_, extractor_names, versions, evidence_kinds, evidence_units) = (
        columns[name] for name in OBSERVATION_COLUMNS if name not in EVENT_COLUMNS)
    for i in range(count):
        index = content_index[i]
        block = blocks[index] if index >= 0 else None
        if block is not None:
            added = block[0]
            if added:
                unit = evidence_unit({"event_id": page["event_id"][i], "session_id": page["session_id"][i]},
                                     about_the_author)
                user_ids.extend([page["user_id"][i]] * added)
                keys.extend(block[1])
                values_.extend(block[2])
                weights_.extend(block[3])
                evidence_kinds.extend(block[4])
                extractor_names.extend(block[5])
                versions.extend(block[6])
                evidence_units.extend([unit] * added)
                event_rows.extend([i] * added)
            continue
        event = row = None
        user_id, kind = page["user_id"][i], page["kind"][i]
        unit_of = {"event_id": page["event_id"][i], "session_id": page["session_id"][i],
                   "reply_to": page["reply_to"][i]}
        added = 0
        for extractor in extractors:
            name = extractor.name
            if index >= 0 and name in prepared:
                items = prepared[name][index]
            else:
                if event is None:
                    row = {name: page[name][i] for name in names}
                    event = event_view(row)
                findings = extractor(event)
                if row.get("target_arrived"):
                    # Extracted once already, without its target: keep only what the target adds.
                    findings = findings_the_target_adds(findings, extractor(replace(event, target=None)))
                items = [(finding, finding.key, finding.value, finding.weight * weights[name],
                          f"{name}:{finding.kind or kind}") for finding in findings]
            if not items:
                continue
            for finding, key, value, weight, evidence_kind in items:
                user_ids.append(finding.user_id or user_id)
                keys.append(key)
                values_.append(value)
                weights_.append(weight)
                evidence_kinds.append(evidence_kind)
                evidence_units.append(evidence_unit(unit_of, finding))
            extractor_names.extend([name] * len(items))
            versions.extend([extractor.version] * len(items))
            added += len(items)
        if added:
            event_rows.extend([i] * added)
    return columns, event_rows


def observations_of_page_event_by_event(extractors: list, weights: dict[str, float], names: list[str],
                                        rows: list[tuple]) -> dict[str, list]:
    """observations_of_page the plain way, each extractor called on each event: what it must equal, row for
    row (the equivalence tests and benchmarks/profile_extraction.py compare them)."""
    columns: dict[str, list] = {name: [] for name in OBSERVATION_COLUMNS}
    for values in rows:
        row = dict(zip(names, values))
        event = event_view(row)
        for extractor in extractors:
            findings = extractor(event)
            if row.get("target_arrived"):
                findings = findings_the_target_adds(findings, extractor(replace(event, target=None)))
            for finding in findings:
                columns["user_id"].append(finding.user_id or event.user_id)
                columns["key"].append(finding.key)
                columns["value"].append(finding.value)
                columns["weight"].append(finding.weight * weights[extractor.name])
                columns["observed_at"].append(row["occurred_at"])
                columns["event_id"].append(event.event_id)
                columns["source"].append(row["source"])
                columns["extractor"].append(extractor.name)
                columns["extractor_version"].append(extractor.version)
                columns["batch_id"].append(row["batch_id"])
                columns["evidence_kind"].append(f"{extractor.name}:{finding.kind or event.kind}")
                columns["evidence_unit"].append(evidence_unit(row, finding))
    return columns


_worker_state: dict = {}


def _start_worker(settings: Settings) -> None:
    extractors = enabled_extractors(settings)
    _worker_state.update(extractors=extractors, seen={},
                         weights={x.name: settings.beliefs.extractor(x.name).weight for x in extractors})


def _extract_in_worker(page: pa.Table) -> pa.Table:
    return observations_of_table(_worker_state["extractors"], _worker_state["weights"], page, _worker_state["seen"])


def _pages(con: duckdb.DuckDBPyConnection, queued: int) -> Iterator[pa.Table]:
    """The queue page by page, as Arrow: no Python object per value, and cheap to send to a worker."""
    for first in range(1, queued + 1, FETCH_ROWS):
        yield con.sql(load_sql("extract_queue_page"),
                      params={"first": first, "last": first + FETCH_ROWS - 1}).to_arrow_table()


def queue_events_to_extract(con: duckdb.DuckDBPyConnection, everything: bool) -> int:
    """Queue the events to extract (events_to_extract) in the temp table extract_queue, numbered for paging;
    return how many. Pages are read from a table, not a streaming result: DuckDB allows no writes on a
    connection while a result streams, and a second cursor would not see the caller's transaction. At 10 M
    events the queue outgrows warehouse.memory_limit and spills to `<warehouse>.tmp` (the query keeps no whole
    event in memory: see its header)."""
    execute(con, "create or replace temp table extract_queue as select *, row_number() over () as queue_row from ("
            + load_sql("events_to_extract") + ")", {"everything": everything})
    [(queued,)] = execute(con, "select count(*) from extract_queue")
    return queued


def duckdb_share(limit: int, workers: int) -> int:
    """DuckDB's memory_limit while `workers` extraction processes run beside it: what they leave of the
    configured limit, but never under a quarter of it (DuckDB spills the queue and the new observations;
    it cannot work in nothing)."""
    return max(limit - workers * WORKER_MEMORY_BYTES, limit // 4)


def extract_pending(con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime) -> ExtractionReport:
    """Extract observations from every batch not yet extracted. Runs inside the caller's transaction.

    Extraction is pure Python (regular expressions, language identification): with many events queued and
    `beliefs.extract_workers` > 1, pages go to that many worker processes while this one writes.
    """
    extractors = enabled_extractors(settings)
    extractor_set = extractor_set_id(settings, extractors)
    weights = {x.name: settings.beliefs.extractor(x.name).weight for x in extractors}
    [(extract_run,)] = run(con, "next_extract_run")
    batches = [batch_id for (batch_id,) in run(con, "pending_batches")]
    report = ExtractionReport(extract_run=extract_run, batches=len(batches), events=0, observations=0)
    if not batches:
        return report
    writer = ObservationWriter(con, extract_run)
    per_batch: Counter[str] = Counter()
    queued = report.events = queue_events_to_extract(con, everything=False)
    workers = min(settings.beliefs.extract_workers, max(1, queued // PARALLEL_MIN_EVENTS))
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # no fork: the parent holds DuckDB's threads
        with memory_limit_while(con, settings.warehouse.memory_limit, lambda limit: duckdb_share(limit, workers)), \
                ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                    initargs=(settings,)) as pool:
            pending = deque()
            for page in _pages(con, queued):
                pending.append(pool.submit(_extract_in_worker, page))
                while len(pending) > 2 * workers:
                    writer.add_table(pending.popleft().result(), per_batch)
            while pending:
                writer.add_table(pending.popleft().result(), per_batch)
    else:
        seen: dict = {}
        for page in _pages(con, queued):
            writer.add_table(observations_of_table(extractors, weights, page, seen), per_batch)
    execute(con, "drop table extract_queue")
    writer.flush()
    report.observations = writer.written
    for batch_id in batches:
        run(con, "insert_extracted_batch", {"batch_id": batch_id, "extract_run": extract_run,
                                            "extractor_set": extractor_set, "observations": per_batch[batch_id],
                                            "extracted_at": now})
    log.info("extraction run %d: %d batches, %d events -> %d observations (%d worker processes)",
             extract_run, report.batches, report.events, report.observations, workers)
    return report


# --- sharded extraction (scale-out: each shard runs where a task runner puts it) -----------------------

SHARD_RUN_PREFIX = "refresh-"


def shard_work_root(settings: Settings) -> Path:
    """Where a sharded refresh writes its per-shard copies of events: `<warehouse file>.shards/refresh-<id>/`,
    a folder named after the warehouse file so that it is selfmodel's own (never a folder of the user's
    that happens to sit beside it). Each run's folder is removed after it; a run killed with -9 leaves its
    folder, which `selfmodel forget` clears (it holds users' texts): see shard_leftovers."""
    return settings.warehouse_path.with_name(settings.warehouse_path.name + ".shards")


def shard_leftovers(settings: Settings) -> list[Path]:
    """The work folders of sharded refreshes that did not clean up after themselves (killed with -9)."""
    root = shard_work_root(settings)
    return sorted(path for path in root.glob(SHARD_RUN_PREFIX + "*") if path.is_dir()) if root.is_dir() else []


@dataclass
class ShardPlan:
    """The events one refresh must extract, split by user into Parquet files any worker can read."""

    batches: list[str]
    events: int
    event_files: list[str]


def export_shards(con: duckdb.DuckDBPyConnection, settings: Settings, folder: Path, shards: int,
                  everything: bool = False) -> ShardPlan:
    """Write the pending events (all events when `everything`, for a full refresh) as one Parquet file per shard."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = [b for (b,) in run(con, "pending_batches_all" if everything else "pending_batches")]
    queued = queue_events_to_extract(con, everything)
    files = []
    for shard in range(shards):
        path = folder / f"events-shard-{shard:04d}.parquet"
        table = con.sql(load_sql("export_extract_queue_shard"), params={"shards": shards, "shard": shard}).to_arrow_table()
        pq.write_table(table, path)
        files.append(str(path))
    execute(con, "drop table extract_queue")
    return ShardPlan(batches, queued, files)


def extract_shard(settings: Settings, events_file: str, observations_file: str) -> int:
    """Run the extractors over one shard's events file; write its observations as Parquet; return how many."""
    extractors = enabled_extractors(settings)
    weights = {x.name: settings.beliefs.extractor(x.name).weight for x in extractors}
    source = pq.ParquetFile(events_file)
    writer = None
    written = 0
    seen: dict = {}
    for batch in source.iter_batches(batch_size=FETCH_ROWS):
        table = observations_of_table(extractors, weights, pa.Table.from_batches([batch]), seen)
        writer = writer or pq.ParquetWriter(observations_file, table.schema)
        writer.write_table(table)
        written += table.num_rows
    if writer is None:
        pq.write_table(observation_table({name: [] for name in OBSERVATION_COLUMNS}), observations_file)
    else:
        writer.close()
    return written


def load_shards(con: duckdb.DuckDBPyConnection, settings: Settings, plan: ShardPlan, observation_files: list[str],
                now: datetime) -> ExtractionReport:
    """Store the shards' observations as one extraction run. Runs inside the caller's transaction."""
    extractors = enabled_extractors(settings)
    [(extract_run,)] = run(con, "next_extract_run")
    writer = ObservationWriter(con, extract_run)
    per_batch: Counter[str] = Counter()
    for path in observation_files:
        writer.add_table(pq.read_table(path), per_batch)  # written by extract_shard as observation_table makes it
    writer.flush()
    extractor_set = extractor_set_id(settings, extractors)
    for batch_id in plan.batches:
        run(con, "insert_extracted_batch", {"batch_id": batch_id, "extract_run": extract_run,
                                            "extractor_set": extractor_set, "observations": per_batch[batch_id],
                                            "extracted_at": now})
    return ExtractionReport(extract_run, len(plan.batches), plan.events, writer.written)
