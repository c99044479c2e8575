"""Backfills: the belief history of nightly runs, rebuilt after the fact; re-running changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from selfmodel.beliefs.backfill import BackfillError, backfill_beliefs, backfill_nights
from selfmodel.beliefs.refresh import refresh_beliefs
from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from selfmodel.settings import load_settings
from warehouse.db import connect

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
NOW = T0 + timedelta(days=60)  # the ingest clock: every event is in the past
TEXTS = {
    "ana": ["I'm a nurse and I love jazz music so much, really.", "As a nurse I work nights; any jazz music playlists?"],
    "ben": ["I'm a teacher. How do I sort a list in python? `sorted(x)`", "I have two dogs and a cat at home."],
    "cy": ["Actually I work as a software engineer now, mostly python code.", "My favorite band is queen, truly."],
}
NIGHTS = [T0 + timedelta(days=2 * n, hours=2) for n in range(1, 6)]  # 02:00 every other day


def events() -> list[dict]:
    """Each user writes every day for ten days, at different hours."""
    records = []
    for day in range(10):
        for hour, (user, texts) in enumerate(TEXTS.items()):
            records.append({"event_id": f"{user}-{day}", "user_id": user, "kind": "message", "text": texts[day % 2],
                            "occurred_at": (T0 + timedelta(days=day, hours=6 + 5 * hour)).isoformat()})
    return records


def write(path: Path, records: list[dict]) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)


def new_warehouse(folder: Path):
    folder.mkdir()
    (folder / "selfmodel.yaml").write_text(
        "warehouse: {path: wh.duckdb, analyst_copy: null}\n"
        "sources: [{name: chat, format: jsonl, path: chat.jsonl}]\n")
    return load_settings(folder / "selfmodel.yaml", environ={})


def history(settings) -> list[tuple]:
    con = connect(settings.warehouse_path, read_only=True)
    try:
        return con.execute(
            "select user_id, key, value, evidence_count, first_seen, last_evidence_at, valid_from, valid_to, "
            "confidence, decayed_evidence from belief_history order by all").fetchall()
    finally:
        con.close()


def assert_same_history(got: list[tuple], expected: list[tuple]) -> None:
    assert [row[:8] for row in got] == [row[:8] for row in expected]
    for got_row, expected_row in zip(got, expected):
        assert got_row[8] == pytest.approx(expected_row[8], rel=1e-9)
        assert got_row[9] == pytest.approx(expected_row[9], rel=1e-9)


def nightly_history(folder: Path, after: datetime | None = None) -> list[tuple]:
    """What nightly runs write: each night ingests what arrived since the last, then refreshes as of that night."""
    settings = new_warehouse(folder)
    records, previous = events(), datetime.min.replace(tzinfo=timezone.utc)
    for night in NIGHTS:
        write(folder / "chat.jsonl",
              [r for r in records if previous < datetime.fromisoformat(r["occurred_at"]) <= night])
        ingest(settings, clock=FixedClock(NOW))
        con = connect(settings.warehouse_path)
        refresh_beliefs(con, settings, as_of=night, clock=FixedClock(NOW))
        if after is not None and night == NIGHTS[-1]:
            refresh_beliefs(con, settings, as_of=after, clock=FixedClock(NOW))
        con.close()
        previous = night
    return history(settings)


def test_a_backfill_writes_the_history_nightly_runs_would_have(tmp_path: Path) -> None:
    expected = nightly_history(tmp_path / "nightly")
    assert len({row[6] for row in expected}) == len(NIGHTS)  # every night changed something

    settings = new_warehouse(tmp_path / "backfill")
    write(tmp_path / "backfill" / "chat.jsonl", events())  # everything arrived at once, later
    ingest(settings, clock=FixedClock(NOW))
    con = connect(settings.warehouse_path)
    report = backfill_beliefs(con, settings, NIGHTS[0], NIGHTS[-1], timedelta(days=2), clock=FixedClock(NOW))
    con.close()

    assert [night.as_of for night in report.nights] == NIGHTS
    assert [night.mode for night in report.nights] == ["rewind"] + ["incremental"] * (len(NIGHTS) - 1)
    assert report.caught_up_to is None
    assert_same_history(history(settings), expected)


def test_backfilling_nights_already_refreshed_changes_nothing_and_keeps_beliefs_current(tmp_path: Path) -> None:
    later = NIGHTS[-1] + timedelta(days=20)
    expected = nightly_history(tmp_path / "nightly", after=later)
    settings = load_settings(tmp_path / "nightly" / "selfmodel.yaml", environ={})

    for _ in range(2):  # once over the nightly runs' history, then again over the backfill's own
        con = connect(settings.warehouse_path)
        report = backfill_beliefs(con, settings, NIGHTS[0], NIGHTS[-1], timedelta(days=2), clock=FixedClock(NOW))
        con.close()
        assert report.caught_up_to == later
        assert_same_history(history(settings), expected)


def test_a_backfill_from_the_middle_keeps_what_was_believed_before(tmp_path: Path) -> None:
    expected = nightly_history(tmp_path / "nightly")
    settings = load_settings(tmp_path / "nightly" / "selfmodel.yaml", environ={})
    con = connect(settings.warehouse_path)
    backfill_beliefs(con, settings, NIGHTS[2], NIGHTS[-1], timedelta(days=2), clock=FixedClock(NOW))
    con.close()
    got = history(settings)
    # Before the range: untouched. At its first night: rows in force were ended and folded again from
    # scratch (the same numbers); unchanged beliefs therefore show one more history row.
    before = [row for row in expected if row[6] < NIGHTS[2]]
    assert all(row[7] is not None and row[7] <= NIGHTS[2] for row in got if row[6] < NIGHTS[2])
    assert [row[:7] for row in got if row[6] < NIGHTS[2]] == [row[:7] for row in before]
    in_force = {row[:3]: row for row in got if row[7] is None}
    expected_in_force = {row[:3]: row for row in expected if row[7] is None}
    assert in_force.keys() == expected_in_force.keys()
    for belief, row in expected_in_force.items():
        assert in_force[belief][3] == row[3]
        assert in_force[belief][8] == pytest.approx(row[8], rel=1e-9)


def test_the_range_is_checked() -> None:
    assert backfill_nights(T0, T0 + timedelta(days=2), timedelta(days=1)) == [
        T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]
    with pytest.raises(BackfillError, match="before it starts"):
        backfill_nights(T0, T0 - timedelta(days=1), timedelta(days=1))
    with pytest.raises(BackfillError, match="positive"):
        backfill_nights(T0, T0, timedelta(0))
    with pytest.raises(BackfillError, match="more than"):
        backfill_nights(T0, T0 + timedelta(days=365), timedelta(minutes=1))


def test_the_backfill_command_prints_one_json_object_and_rejects_a_bad_range(tmp_path: Path) -> None:
    settings = new_warehouse(tmp_path / "wh")
    write(tmp_path / "wh" / "chat.jsonl", events())
    ingest(settings, clock=FixedClock(NOW))
    command = [sys.executable, "-m", "selfmodel", "--config", str(tmp_path / "wh" / "selfmodel.yaml"), "backfill"]

    done = subprocess.run(command + ["--from", "2024-01-03T02:00Z", "--to", "2024-01-11T02:00Z", "--every", "2",
                                     "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [night["as_of"] for night in report["nights"]] == [night.isoformat() for night in NIGHTS]

    bad = subprocess.run(command + ["--from", "2024-01-11", "--to", "2024-01-03"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert "before it starts" in bad.stderr and "Traceback" not in bad.stderr


def test_a_range_ending_in_the_future_is_refused_before_any_night_is_rewound(tmp_path: Path) -> None:
    settings = new_warehouse(tmp_path / "wh")
    write(tmp_path / "wh" / "chat.jsonl", events())
    ingest(settings, clock=FixedClock(NOW))
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings, as_of=NIGHTS[-1], clock=FixedClock(NOW))
        before = con.execute("select * from belief_history order by all").fetchall()
        with pytest.raises(BackfillError, match="the range's end 2024-03-01T00:05:01.*is in the future"):
            backfill_beliefs(con, settings, NIGHTS[0], NOW + timedelta(seconds=301), clock=FixedClock(NOW))
        assert con.execute("select * from belief_history order by all").fetchall() == before
        assert con.execute("select count(*) from refresh_runs").fetchone() == (1,)
    finally:
        con.close()


def test_a_backfill_is_a_way_out_of_beliefs_left_in_the_far_future(tmp_path: Path) -> None:
    far_future = datetime(9999, 1, 1, tzinfo=timezone.utc)
    settings = new_warehouse(tmp_path / "wh")
    write(tmp_path / "wh" / "chat.jsonl", events())
    ingest(settings, clock=FixedClock(NOW))
    con = connect(settings.warehouse_path)
    try:
        refresh_beliefs(con, settings, as_of=far_future, clock=FixedClock(far_future))  # as before the check
        report = backfill_beliefs(con, settings, NIGHTS[0], NIGHTS[-1], timedelta(days=2), clock=FixedClock(NOW))
        assert report.caught_up_to is None  # not brought back to the year 9999
        assert con.execute("select max(valid_from) from belief_history").fetchone() == (NIGHTS[-1],)
        next_night = NIGHTS[-1] + timedelta(days=1)
        nightly = refresh_beliefs(con, settings, as_of=next_night, clock=FixedClock(NOW))  # and nights go on
        assert nightly.mode == "incremental" and nightly.as_of == next_night
    finally:
        con.close()
