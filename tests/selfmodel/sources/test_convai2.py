"""ConvAI2Adapter: dialogs into messages, responses and feedback; personas into labels only."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from selfmodel.clock import FixedClock
from selfmodel.ingest import ingest
from selfmodel.settings import SourceSettings
from selfmodel.sources.base import FileRead
from selfmodel.sources.convai2 import ConvAI2Adapter, dialog_key, turn_times


def dialog(**overrides) -> dict:
    base = {
        "dialog": [
            {"id": 0, "sender": "participant1", "text": "hi there", "evaluation_score": None, "sender_class": "Human"},
            {"id": 1, "sender": "participant2", "text": "hello! do you like dogs?", "evaluation_score": 4,
             "sender_class": "Bot"},
            {"id": 2, "sender": "participant1", "text": "yes", "evaluation_score": None, "sender_class": "Human"},
        ],
        "start_time": "2018-10-29 03:32:00.000000",
        "end_time": "2018-10-29 03:33:00.000000",
        "bot_profile": ["i like to eat chocolate candy.", "  "],
        "user_profile": ["i am a clean eater.", "i love running."],
        "eval_score": 3,
        "profile_match": 1,
        "participant1_id": {"class": "User", "user_id": "User 00172"},
        "participant2_id": {"class": "Bot", "user_id": "Bot 004"},
    }
    base.update(overrides)
    return base


def read_file(path: Path) -> tuple[list[dict], list]:
    source = ConvAI2Adapter(path, SourceSettings(name="c", format="convai2", path=str(path)),
                            chunk_records=1000, max_record_bytes=1000)
    labels: list = []
    records = [row for chunk in source.read([FileRead(path=path, label="d.json")], labels) for row in chunk.to_pylist()]
    return records, labels


def docs(records: list[dict]) -> list[dict]:
    return [json.loads(r["doc"]) for r in records if r["doc"]]


def test_turn_times_are_interpolated_between_start_and_end() -> None:
    assert turn_times("2018-10-29 03:32:00", "2018-10-29 03:33:00", 3) == [
        "2018-10-29T03:32:00", "2018-10-29T03:32:30", "2018-10-29T03:33:00"]
    assert turn_times("2018-10-29 03:32:00", "2018-10-29 03:33:00", 1) == ["2018-10-29T03:32:00"]
    # an end before the start, or none, puts every turn at the start; an unreadable start is passed on raw
    assert turn_times("2018-10-29 03:32:00", "2018-10-29 03:00:00", 2) == ["2018-10-29T03:32:00"] * 2
    assert turn_times("2018-10-29 03:32:00", None, 2) == ["2018-10-29T03:32:00"] * 2
    assert turn_times("yesterday", "2018-10-29 03:33:00", 2) == ["yesterday", "yesterday"]
    assert turn_times(None, None, 1) == [None]


def test_human_turns_are_messages_and_bot_turns_responses_of_the_human(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([dialog()]))
    session = dialog_key(dialog())

    records, _ = read_file(path)

    turns = [d for d in docs(records) if d["kind"] != "feedback"]
    assert [(d["event_id"], d["kind"], d["user_id"], d["text"], d["occurred_at"]) for d in turns] == [
        (f"{session}:0", "message", "User 00172", "hi there", "2018-10-29T03:32:00"),
        (f"{session}:1", "response", "User 00172", "hello! do you like dogs?", "2018-10-29T03:32:30"),
        (f"{session}:2", "message", "User 00172", "yes", "2018-10-29T03:33:00"),
    ]
    assert {d["session_id"] for d in turns} == {session}
    assert [d["attributes"]["responder"] for d in turns] == [None, "Bot 004", None]
    assert [d["reply_to"] for d in turns] == [None, f"{session}:0", None]  # a response answers the human turn
    assert all(d["attributes"]["occurred_at_estimated"] for d in turns)
    assert all(r["line_no"] == 1 for r in records)  # the dialog's position in the file


def test_turn_scores_and_the_dialog_score_become_feedback(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([dialog()]))
    session = dialog_key(dialog())

    feedback = [d for d in docs(read_file(path)[0]) if d["kind"] == "feedback"]

    assert [(d["event_id"], d.get("reply_to"), d["rating"], d["attributes"]["scope"]) for d in feedback] == [
        (f"{session}:1:score", f"{session}:1", 4, "turn"),
        (f"{session}:dialog_score", None, 3, "dialog"),
    ]
    assert feedback[0]["occurred_at"] == "2018-10-29T03:32:30"
    assert feedback[1]["occurred_at"] == "2018-10-29 03:33:00.000000"
    assert feedback[1]["attributes"]["profile_match"] == 1 and feedback[1]["attributes"]["responder"] == "Bot 004"


def test_unscored_dialogs_give_no_feedback_and_an_empty_profile_match_is_null(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    unscored = dialog(eval_score=None, profile_match="")
    unscored["dialog"][1]["evaluation_score"] = None
    path.write_text(json.dumps([unscored, dialog(start_time="2018-10-30 00:00:00", profile_match="")]))

    kinds = [(d["kind"], d["attributes"].get("scope"), d["attributes"].get("profile_match"))
             for d in docs(read_file(path)[0]) if d["kind"] == "feedback"]

    assert kinds == [("feedback", "turn", None), ("feedback", "dialog", None)]


def test_personas_become_labels_and_never_records(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps([dialog()]))

    records, labels = read_file(path)

    assert sorted((label.user_id, label.label, label.value) for label in labels) == [
        ("Bot 004", "persona", "i like to eat chocolate candy."),
        ("User 00172", "persona", "i am a clean eater."),
        ("User 00172", "persona", "i love running."),
    ]
    assert {label.context for label in labels} == {dialog_key(dialog())}
    assert labels[0].observed_at == datetime(2018, 10, 29, 3, 32, tzinfo=timezone.utc)
    assert not any("clean eater" in r["raw_text"] or "chocolate" in r["raw_text"] for r in records)


def test_the_human_is_found_by_class_even_as_participant2(tmp_path: Path) -> None:
    swapped = dialog(participant1_id={"class": "Bot", "user_id": "Bot 009"},
                     participant2_id={"class": "User", "user_id": "User 00001"})
    swapped["dialog"] = [
        {"id": 0, "sender": "participant2", "text": "hey", "sender_class": "Human"},
        {"id": 1, "sender": "participant1", "text": "hi human", "sender_class": "Bot"},
    ]
    path = tmp_path / "d.json"
    path.write_text(json.dumps([swapped]))

    turns = [d for d in docs(read_file(path)[0]) if d["kind"] != "feedback"]

    assert [(d["kind"], d["user_id"], d["attributes"]["responder"]) for d in turns] == [
        ("message", "User 00001", None), ("response", "User 00001", "Bot 009")]
    assert turns[1]["reply_to"] == turns[0]["event_id"]


def test_a_bot_turn_answers_the_latest_human_turn_and_an_opening_bot_turn_nothing(tmp_path: Path) -> None:
    opened_by_bot = dialog(eval_score=None)
    opened_by_bot["dialog"] = [
        {"id": 0, "sender": "participant2", "text": "welcome", "sender_class": "Bot"},
        {"id": 1, "sender": "participant1", "text": "hi", "sender_class": "Human"},
        {"id": 2, "sender": "participant2", "text": "how are you?", "sender_class": "Bot"},
        {"id": 3, "sender": "participant2", "text": "still there?", "sender_class": "Bot"},
    ]
    path = tmp_path / "d.json"
    path.write_text(json.dumps([opened_by_bot]))
    session = dialog_key(opened_by_bot)

    replies = [d.get("reply_to") for d in docs(read_file(path)[0])]

    assert replies == [None, None, f"{session}:1", f"{session}:1"]


def test_dialogs_and_turns_of_the_wrong_shape_are_marked(tmp_path: Path) -> None:
    bad_turn = dialog(eval_score=None)
    bad_turn["dialog"] = ["just a string"]
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"dialog": "not a list"}, bad_turn, 42]))

    records, _ = read_file(path)

    assert [(r["line_no"], r["pre_reason"], r["raw_text"]) for r in records] == [
        (1, "wrong_type", '{"dialog": "not a list"}'),
        (2, "wrong_type", '"just a string"'),
        (3, "wrong_type", "42"),
    ]


def test_a_truncated_file_keeps_the_dialogs_before_the_break(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    text = json.dumps([dialog(), dialog(start_time="2018-10-30 00:00:00")])
    path.write_text(text[: text.index("2018-10-30") + 4])

    records, labels = read_file(path)

    assert [r["pre_reason"] for r in records] == [None] * 5 + ["malformed_json"]
    assert records[-1]["line_no"] == 2
    assert records[-1]["pre_detail"].startswith("the file stops being valid JSON after dialog 1")
    assert len(labels) == 3


def test_a_gzipped_dump_gives_the_records_of_the_plain_one_and_a_cut_one_says_so(tmp_path: Path) -> None:
    text = json.dumps([dialog(), dialog(start_time="2018-10-30 00:00:00")]).encode()
    (tmp_path / "plain.json").write_bytes(text)
    packed = gzip.compress(text)
    (tmp_path / "d.json.gz").write_bytes(packed)
    (tmp_path / "cut.json.gz").write_bytes(packed[:-8])  # its checksum and size are missing

    source = ConvAI2Adapter(tmp_path, SourceSettings(name="c", format="convai2", path=str(tmp_path)),
                            chunk_records=1000, max_record_bytes=1000)
    assert [path.name for path in source.discover()] == ["cut.json.gz", "d.json.gz", "plain.json"]
    plain, plain_labels = read_file(tmp_path / "plain.json")
    unpacked, unpacked_labels = read_file(tmp_path / "d.json.gz")
    cut, _ = read_file(tmp_path / "cut.json.gz")

    assert unpacked == plain and unpacked_labels == plain_labels
    assert [r["pre_reason"] for r in cut] == [None] * 10 + ["unreadable_file"]
    assert cut[-1]["pre_detail"].startswith("the gzip data is broken after dialog 2: ")


def test_a_dialog_file_ingests_with_turns_scores_and_labels_reconciled(tmp_path: Path, make_settings) -> None:
    (tmp_path / "d.json").write_text(json.dumps([dialog(), dialog(start_time="2018-10-30 00:00:00")]))
    settings = make_settings([{"name": "convai", "format": "convai2", "path": "d.json"}])

    [report] = ingest(settings, clock=FixedClock(datetime(2025, 1, 1, tzinfo=timezone.utc)))

    # per dialog: 3 turns + 1 turn score + 1 dialog score
    assert (report.status, report.rows_read, report.loaded, report.quarantined) == ("committed", 10, 10, 0)
    assert report.labels_loaded == 6
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        kinds = con.execute("select kind, count(*) from events group by kind order by kind").fetchall()
        assert kinds == [("feedback", 4), ("message", 4), ("response", 2)]
        times = con.execute("select occurred_at from events where kind <> 'feedback' and session_id = ? "
                            "order by occurred_at", [dialog_key(dialog())]).fetchall()
        assert [t for (t,) in times] == [datetime(2018, 10, 29, 3, 32, s, tzinfo=timezone.utc) for s in (0, 30)] + [
            datetime(2018, 10, 29, 3, 33, tzinfo=timezone.utc)]
        [(persona_events,)] = con.execute("select count(*) from events where text like '%clean eater%'").fetchall()
        assert persona_events == 0
    finally:
        con.close()
