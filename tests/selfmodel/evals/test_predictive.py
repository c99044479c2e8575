"""The predictive backtest on warehouses with hand-placed observations: which cutoffs it judges, that each
cutoff believes only what came before it, and topic top-1 beside the most-frequent-topic baseline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from selfmodel.evals.predictive import backtest_cutoffs, load_predictive_data, subset_metrics
from warehouse.db import connect

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
TOPIC = {"cardinality": "many", "half_life_days": 2, "prior": 1.0}  # fast decay: recency decides


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def warehouse_with(settings, observations: list[tuple[str, str, str, float]]):
    """A migrated warehouse holding one message event per (user, key, value, day) and its observation."""
    con = connect(settings.warehouse_path)
    for n, (user, key, value, when) in enumerate(observations):
        con.execute(
            "insert into events (event_id, user_id, occurred_at, kind, text, tags, source, batch_id, attributes, "
            "content_hash, is_late, ingested_at) values (?, ?, ?, 'message', '', [], 'chat', 'b1', '{}', ?, false, ?)",
            [f"e{n}", user, day(when), f"h{n}", day(100)]).fetchall()
        con.execute(
            "insert into observations values (?, ?, ?, 1.0, ?, ?, 'chat', 'test', '1', 'b1', 1, null, null)",
            [user, key, value, day(when), f"e{n}"]).fetchall()
    return con


def test_the_backtest_judges_every_cutoff_each_with_only_the_evidence_before_it(make_settings) -> None:
    # The data ends on day 60: cutoffs on days 50, 40, 30 (and 20, 10, 0, -10 with more of them).
    observations = [("steady", "topic", "jazz", d) for d in range(0, 61, 2)]
    observations += [("late", "topic", "jazz", d) for d in range(45, 61, 2)]  # first seen between cutoffs 40 and 50
    observations += [("switcher", "topic", "jazz", d) for d in range(0, 31, 2)]
    observations += [("switcher", "topic", "food", d) for d in range(31, 61, 2)]  # food only after cutoff 30
    settings = make_settings([], eval={"predictive": {"cutoff_days": 10, "horizon_days": 10, "backtest_cutoffs": 7,
                                                      "backtest_every_days": 10}},
                             beliefs={"keys": {"topic": TOPIC}})
    con = warehouse_with(settings, observations)
    data = load_predictive_data(con, settings)
    con.close()
    assert [w.cutoff for w in data.windows] == [day(50), day(40), day(30), day(20), day(10)]
    assert [w.horizon_end for w in data.windows] == [day(60), day(50), day(40), day(30), day(20)]
    assert data.skipped_cutoffs == [day(0), day(-10)]  # at or before the first event: nothing to believe yet
    judged = {(j.cutoff, j.user_id, j.key) for j in data.judgements}
    assert {cutoff for cutoff, _, _ in judged} == {w.cutoff for w in data.windows}
    late = {cutoff for cutoff, user, _ in judged if user == "late"}
    assert late == {day(50)}  # at cutoff 40 the late user was not known yet ...
    assert data.active_users[(day(40), "late")] is None  # ... though active in its window
    assert data.active_users[(day(50), "late")] > 0
    # The switcher's food belief exists only at cutoffs after day 31: earlier cutoffs judge only jazz.
    by_cutoff = {}
    for j in data.judgements:
        if j.user_id == "switcher":
            by_cutoff.setdefault(j.cutoff, []).append(j)
    assert len(by_cutoff[day(30)]) == 1 and not by_cutoff[day(30)][0].holds  # jazz, not said again in (30, 40]
    assert len(by_cutoff[day(40)]) == 2  # jazz and food, both believed at day 40
    steady = [j for j in data.judgements if j.user_id == "steady"]
    assert len(steady) == 5 and all(j.holds for j in steady)
    # A cutoff's confidence comes from the evidence up to it: the late user is less sure at 50 than steady.
    assert data.active_users[(day(50), "late")] < data.active_users[(day(50), "steady")]
    metrics = subset_metrics(data.judgements, data.active_users, 0.6)
    # steady: jazz at 5 cutoffs; late: 1; switcher: jazz at 10, 20, 30, jazz and food at 40, 50
    assert metrics.metrics["beliefs_judged"] == len(data.judgements) == 5 + 1 + 3 + 2 * 2
    assert metrics.metrics["active_users"] == len(data.active_users)  # one per (cutoff, user)
    # per-user results for regressions sum over the cutoffs
    served = [j for j in data.judgements if j.user_id == "steady" and j.confidence >= 0.6]
    assert metrics.per_user["steady"] == (len(served), len(served))


def test_topic_top1_and_the_most_frequent_topic_differ_when_recency_matters(make_settings) -> None:
    observations = [("recent", "topic", "python", d) for d in range(0, 5)]  # five old python posts ...
    observations += [("recent", "topic", "quantum", d) for d in (18, 19)]  # ... then two fresh quantum ones
    observations += [("recent", "topic", "quantum", 25)]  # the window (20, 30] is about quantum
    observations += [("loyal", "topic", "jazz", d) for d in (1, 10, 19)] + [("loyal", "topic", "jazz", 22)]
    observations += [("loyal", "topic", "rock", 19)]  # jazz is both the most frequent and the most believed
    observations += [("quiet", "topic", "jazz", d) for d in (1, 2)]  # believes, but says nothing in the window
    observations += [("newcomer", "topic", "jazz", 21)]  # speaks in the window, unknown at the cutoff
    observations += [("tied", "topic", "b", 10), ("tied", "topic", "a", 10), ("tied", "topic", "a", 26)]
    settings = make_settings([], eval={"predictive": {"cutoff_days": 10, "horizon_days": 10, "backtest_cutoffs": 1}},
                             beliefs={"keys": {"topic": TOPIC}})
    con = warehouse_with(settings, observations + [("loyal", "role", "nurse", 30)])  # the data ends on day 30
    data = load_predictive_data(con, settings)
    con.close()
    [counts] = data.topic_top1.values()
    # recent: believed quantum (hit), most frequent python (miss); loyal: jazz both (hit, hit);
    # tied: a and b at equal confidence and count, both go to a (hit, hit); quiet and newcomer are not judged.
    assert (counts.users, counts.believed_hits, counts.frequent_hits) == (3, 3, 2)
    assert counts.metrics() == {"topic_top1": 1.0, "topic_top1_most_frequent": pytest.approx(2 / 3),
                                "topic_top1_users": 3}


def test_backtest_cutoffs_the_calendar_cannot_hold_are_left_out_not_a_traceback() -> None:
    """Cutoffs before year 1 (a huge backtest_every_days or backtest_cutoffs) would be skipped as before the first
    event anyway; computing them must not raise OverflowError."""
    end = datetime(2018, 9, 2, tzinfo=timezone.utc)
    assert backtest_cutoffs(end, 14, 1e308, 4) == [end - timedelta(days=14)]
    many = backtest_cutoffs(end, 14, 14, 100_000)
    assert many[:2] == [end - timedelta(days=14), end - timedelta(days=28)]
    assert len(many) < 100_000 and many[-1] < datetime(1, 1, 15, tzinfo=timezone.utc)
