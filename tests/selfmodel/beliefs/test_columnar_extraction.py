"""The page-at-a-time extraction (observe.observations_of_page) gives exactly the observations of calling each
extractor on each event (observations_of_page_event_by_event): same rows, same order, same values and weights."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from selfmodel.beliefs.extractors import EXTRACTOR_NAMES, build_extractors
from selfmodel.beliefs.extractors.base import EventView, Finding
from selfmodel.beliefs.extractors.language import detect, detect_many
from selfmodel.beliefs.observe import (observation_table, observations_of_page, observations_of_page_event_by_event,
                                       observations_of_table)
from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from tests.selfmodel.beliefs.test_observe import NAMES, row
from warehouse.db import connect, load_sql

EXTRACTORS = build_extractors(list(EXTRACTOR_NAMES))
# Unequal weights, so that a weight applied to the wrong extractor shows.
WEIGHTS = {name: 1.0 + index / 10 for index, name in enumerate(EXTRACTOR_NAMES)}


class WhoSaidIt:
    """A custom extractor that reads the event's ids: not content_only, so it must run event by event."""

    name, version = "who", "1"

    def __call__(self, event: EventView) -> list[Finding]:
        return [Finding("speaker", f"{event.user_id}/{event.event_id}", 1.0)] if event.text else []


class LikedIt:
    """A custom content_only extractor that reads feedback without its target (no built-in one does)."""

    name, version, content_only = "liked", "1", True

    def __call__(self, event: EventView) -> list[Finding]:
        return [Finding("liked", "yes", 1.0)] if event.kind == "feedback" and event.rating else []


def assert_same_observations(names: list[str], rows: list[tuple], extractors=EXTRACTORS, weights=WEIGHTS,
                             page_rows: int = 2000) -> int:
    """Page by page, as refresh reads them, with what earlier pages found carried over (`seen`)."""
    expected = observations_of_page_event_by_event(extractors, weights, names, rows)
    got: dict[str, list] = {column: [] for column in expected}
    seen: dict = {}
    for first in range(0, len(rows), page_rows):
        page = observations_of_page(extractors, weights, names, rows[first:first + page_rows], seen)
        for column in got:
            got[column] += page[column]
    assert got.keys() == expected.keys()
    for column in expected:
        assert len(got[column]) == len(expected[column]), column
        mismatches = [(i, got[column][i], value) for i, value in enumerate(expected[column]) if got[column][i] != value]
        assert not mismatches, f"{column}: {mismatches[:5]}"
    # Bit for bit, not merely equal: a language probability one ulp off would change a belief.
    assert [w.hex() for w in got["weight"]] == [w.hex() for w in expected["weight"]]
    # The same page read as Arrow (refresh reads it so) gives the same table as the lists.
    seen = {}
    as_arrow = pa.concat_tables([
        observations_of_table(extractors, weights, page_table(names, rows[first:first + page_rows]), seen)
        for first in range(0, max(len(rows), 1), page_rows)])
    assert as_arrow.equals(observation_table(got))
    return len(expected["key"])


def page_table(names: list[str], rows: list[tuple]) -> pa.Table:
    types = {"tags": pa.list_(pa.string()), "target_tags": pa.list_(pa.string()), "rating": pa.float64(),
             "occurred_at": pa.timestamp("us", tz="UTC"), "target_arrived": pa.bool_()}
    return pa.table({name: pa.array([row[i] for row in rows], types.get(name, pa.string()))
                     for i, name in enumerate(names)})


def queued_events(settings) -> tuple[list[str], list[tuple]]:
    """Every event of the warehouse as a full refresh queues it for the extractors."""
    con = connect(settings.warehouse_path)
    try:
        cursor = con.execute(load_sql("events_to_extract"), {"everything": True})
        return [column[0] for column in cursor.description], cursor.fetchall()
    finally:
        con.close()


def test_repeated_content_feedback_and_custom_extractors_match_event_by_event() -> None:
    text = "I'm a nurse and I love jazz music. I have two dogs, and as a nurse I work nights."
    rows = [
        row(event_id="m1", user_id="ann", kind="message", text=text, session_id="s1"),
        row(event_id="m2", user_id="bob", kind="message", text=text),  # same content, another user
        row(event_id="m3", user_id="ann", kind="message", text=text, tags=["Jazz", "jazz"], post_type="answer"),
        row(event_id="m4", user_id="cat", kind="message", text="/start I am a nurse"),
        row(event_id="m5", user_id="cat", kind="message", text="HELLO EVERYONE HOW ARE YOU ALL DOING TODAY"),
        row(event_id="m6", user_id="cat", kind="message", text="我喜欢在周末和朋友一起去爬山。"),
        row(event_id="m7", user_id="cat", kind="message", text=None),
        row(event_id="r1", user_id="ann", kind="response", text=" ".join(["word"] * 60)),
        row(event_id="v1", user_id="bob", kind="feedback", vote_type="upvote", reply_to="m3", target_user_id="ann",
            target_kind="message", target_text=text, target_tags=["jazz"], target_post_type="answer"),
        row(event_id="v2", user_id="ann", kind="feedback", vote_type="upvote", reply_to="m3", target_user_id="ann",
            target_kind="message", target_text=text, target_tags=["jazz"], target_post_type="answer"),
        row(event_id="f1", user_id="ann", kind="feedback", rating=-1.0, reply_to="r1", target_user_id="ann",
            target_kind="response", target_text=" ".join(["word"] * 60), target_arrived=True),
        row(event_id="f2", user_id="ann", kind="feedback", rating=1.0, reply_to="gone"),  # its target never came
        # queued again for a target that arrived and is gone again (forgotten): adds nothing
        row(event_id="f3", user_id="ann", kind="feedback", rating=1.0, reply_to="gone", target_arrived=True),
    ]
    extractors = [*EXTRACTORS, WhoSaidIt(), LikedIt()]
    weights = {**WEIGHTS, "who": 0.5, "liked": 2.0}
    observations = assert_same_observations(NAMES, rows, extractors, weights)
    assert assert_same_observations(NAMES, rows, extractors, weights, page_rows=3) == observations
    assert observations > 20
    assert assert_same_observations(NAMES, []) == 0


def test_language_of_many_texts_at_once_is_that_of_each_alone() -> None:
    texts = ["I have two dogs and I live in Berlin.", "Ich habe zwei Hunde und wohne in Berlin.",
             "HELLO EVERYONE HOW ARE YOU ALL DOING TODAY", "Привет, я живу в Москве и люблю читать книги.",
             "私は学生です。犬が好きです。", "ok", "", "12345 67890 ... !!!", "x" * 2000 + " y z",
             "Café crème brûlée, s'il vous plaît, et deux croissants."]
    together = detect_many(texts)
    assert together == [detect(text) for text in texts]
    assert [type(found[1]) for found in together if found] == [float] * sum(1 for found in together if found)


def test_the_stack_exchange_sample_matches_event_by_event(make_settings, qc_sample: Path) -> None:
    settings = make_settings(sources=[{"name": "qc", "format": "stackexchange", "path": str(qc_sample)}])
    [report] = ingest(settings, clock=FixedClock(datetime(2018, 9, 3, tzinfo=timezone.utc)))
    assert report.status == "committed", report.error
    names, rows = queued_events(settings)
    assert len(rows) > 1000
    assert assert_same_observations(names, rows) > 1000


@pytest.mark.shared_data
def test_convai2_matches_event_by_event(make_settings, shared_real_data: Path) -> None:
    path = shared_real_data / "convai2_wild" / "data_volunteers.json"
    settings = make_settings([{"name": "convai2", "format": "convai2", "path": str(path)}])
    [report] = ingest(settings, clock=FixedClock(datetime(2019, 1, 1, tzinfo=timezone.utc)))
    assert report.status == "committed", report.error
    names, rows = queued_events(settings)
    assert assert_same_observations(names, rows) > 5_000
