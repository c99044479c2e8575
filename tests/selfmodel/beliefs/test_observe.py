"""What an observation records beyond its finding: its evidence kind and the unit repeated evidence is counted in."""

from __future__ import annotations

from datetime import datetime, timezone

from selfmodel.beliefs.extractors.base import Finding
from selfmodel.beliefs.extractors.expertise import ExpertiseExtractor
from selfmodel.beliefs.extractors.style import StyleExtractor
from selfmodel.beliefs.observe import evidence_unit, observations_of_page

AT = datetime(2024, 1, 1, tzinfo=timezone.utc)
NAMES = ["event_id", "user_id", "source", "batch_id", "kind", "text", "tags", "rating", "occurred_at", "session_id",
         "reply_to", "post_type", "vote_type", "target_user_id", "target_kind", "target_text", "target_tags",
         "target_post_type", "target_arrived"]


def row(**values) -> tuple:
    defaults = {name: None for name in NAMES} | {"source": "s", "batch_id": "b", "occurred_at": AT, "tags": [],
                                                 "target_arrived": False}
    return tuple((defaults | values)[name] for name in NAMES)


def test_feedback_credited_to_a_post_s_author_counts_within_that_post() -> None:
    vote = dict(zip(NAMES, row(event_id="v1", session_id="thread:9", reply_to="post:7")))
    assert evidence_unit(vote, Finding("expertise", "expert", 0.3, user_id="alice")) == "post|post:7"
    assert evidence_unit(vote, Finding("style.verbosity", "concise", 1.0)) == "session|thread:9"
    alone = dict(zip(NAMES, row(event_id="m1")))
    assert evidence_unit(alone, Finding("topic", "x", 1.0)) == "event|m1"


def test_observations_carry_the_extractor_and_kind_of_their_evidence() -> None:
    rows = [
        row(event_id="v1", user_id="bob", kind="feedback", vote_type="upvote", reply_to="post:7", session_id="thread:7",
            target_user_id="alice", target_kind="message", target_text="An answer.", target_tags=["qubit"],
            target_post_type="answer"),
        row(event_id="v2", user_id="bob", kind="feedback", vote_type="accept", reply_to="post:7", session_id="thread:7",
            target_user_id="alice", target_kind="message", target_text="An answer.", target_tags=["qubit"],
            target_post_type="answer"),
        row(event_id="f1", user_id="carol", kind="feedback", rating=-1.0, reply_to="r1", session_id="chat:1",
            target_user_id="carol", target_kind="response", target_text=" ".join(["word"] * 60)),
    ]
    columns = observations_of_page([ExpertiseExtractor(), StyleExtractor()], {"expertise": 1.0, "style": 1.0}, NAMES,
                                   rows)
    seen = set(zip(columns["user_id"], columns["key"], columns["evidence_kind"], columns["evidence_unit"]))
    assert ("alice", "expertise@qubit", "expertise:upvote", "post|post:7") in seen
    assert ("alice", "expertise", "expertise:accept", "post|post:7") in seen
    assert ("carol", "style.verbosity", "style:thumbs_down", "session|chat:1") in seen


def test_the_queue_of_events_to_extract_spills_instead_of_running_out_of_memory(tmp_path) -> None:
    """Issue 14: queueing every pending event (a full refresh) held them all in memory twice (a CTE read twice,
    and the hash table of a join of every event with every event), so 10 M events under memory_limit 1GB stopped
    with OutOfMemoryException. The same shape at 100k events under 40MB did too; now the queue spills."""
    from warehouse.db import connect, execute
    from selfmodel.beliefs.observe import queue_events_to_extract

    con = connect(tmp_path / "wh.duckdb")
    try:
        # 100k events of ~150 bytes of text; every tenth is feedback on the event before it.
        execute(con, """
            insert into events (event_id, user_id, occurred_at, kind, text, session_id, reply_to, rating, tags,
                                source, batch_id, attributes, content_hash, is_late, ingested_at)
            select 'e' || i, 'u' || (i % 1000), timestamptz '2024-01-01' + to_seconds(i),
                   case when i % 10 = 0 then 'feedback' else 'message' end,
                   repeat('some words here ', 1 + i % 20) || i, null, case when i % 10 = 0 then 'e' || (i - 1) end,
                   null, []::varchar[], 'app', 'b1', '{}'::json, md5(i::varchar), false, now()
            from range(100000) as t(i)""")
        execute(con, "set memory_limit = '40MB'")
        assert queue_events_to_extract(con, everything=False) == 100_000
        [(feedback, with_target, right_target)] = execute(con, """
            select count(*) filter (where kind = 'feedback'), count(target_text),
                   count(*) filter (where target_text like '%' || (regexp_extract(event_id, '\\d+')::int - 1))
            from extract_queue""")
        assert feedback == 10_000 and with_target == 9_999 and right_target == 9_999  # e0 rates no event
        [(rows, numbered)] = execute(con, "select count(*), count(distinct queue_row) from extract_queue")
        assert rows == numbered == 100_000
    finally:
        con.close()
