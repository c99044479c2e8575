"""Format chat: a conversation record (OpenAI chat format) becomes one event per message, and is counted,
deduplicated and quarantined as one record."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfmodel.ingest import ingest
from selfmodel.settings import ConfigError, SourceSettings
from selfmodel.sources.chat import ChatLayout, ConversationProblem, conversation_events
from tests.selfmodel.test_ingest import CLOCK, append, assert_every_batch_balances, counts, query

AT = "2024-06-01T12:00:00Z"


def layout(**source) -> ChatLayout:
    return ChatLayout.of(SourceSettings(**{"name": "c", "format": "chat", "path": "x", **source}))


def conversation(session: str = "c1", user: str = "u1", messages: list | None = None, **fields) -> dict:
    if messages is None:
        messages = [{"role": "user", "content": "i am a nurse"}, {"role": "assistant", "content": "nice"}]
    return {"session_id": session, "user_id": user, "occurred_at": AT, "messages": messages, **fields}


def chat_source(path: str = "chats.jsonl", **extra) -> dict:
    return {"name": "chats", "format": "chat", "path": path, **extra}


def write_jsonl(path: Path, records: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")


def problem_of(record: dict, **source) -> tuple[str, str]:
    with pytest.raises(ConversationProblem) as caught:
        conversation_events(record, layout(**source))
    return caught.value.reason, caught.value.detail


# -- one conversation into events (pure) ------------------------------------------------------------

def test_user_messages_are_messages_and_assistant_messages_responses_to_the_user_message_before() -> None:
    messages = [
        {"role": "system", "content": "you are terse"},
        {"role": "user", "content": "i am a nurse"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "function": {"name": "lookup"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
        {"role": "assistant", "content": "nice"},
        {"role": "developer", "content": "be kind"},
        {"role": "user", "content": "and i have two dogs"},
        {"role": "assistant", "content": "great"},
    ]

    events = conversation_events(conversation(messages=messages), layout())

    assert [(e["event_id"], e["kind"], e["user_id"], e["text"], e["reply_to"]) for e in events] == [
        ("c1:1", "message", "u1", "i am a nurse", None),
        ("c1:4", "response", "u1", "nice", "c1:1"),
        ("c1:6", "message", "u1", "and i have two dogs", None),
        ("c1:7", "response", "u1", "great", "c1:6"),
    ]
    assert {e["session_id"] for e in events} == {"c1"}
    # system, developer and tool messages and tool calls are never events: the next event keeps them
    assert events[0]["attributes"]["context"] == [{"index": 0, "role": "system", "text": "you are terse"}]
    assert events[1]["attributes"]["context"] == [
        {"index": 2, "role": "assistant", "text": None, "tool_calls": [{"id": "t1", "function": {"name": "lookup"}}]},
        {"index": 3, "role": "tool", "text": "42", "tool_call_id": "t1"},
    ]
    assert events[2]["attributes"]["context"] == [{"index": 5, "role": "developer", "text": "be kind"}]
    assert "context" not in events[3]["attributes"]


def test_content_parts_text_is_joined_and_every_other_part_counted_and_skipped() -> None:
    parts = [
        {"type": "text", "text": "look at this"},
        {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_id": "f1"}},
        {"type": "image_url", "image_url": {"url": "https://example.org/dog.png"}},
        {"type": "text", "text": "what is it?"},
    ]
    messages = [{"role": "user", "content": parts},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"},
                                                  {"type": "text", "text": "a cat"}]},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}]

    events = conversation_events(conversation(messages=messages), layout())

    assert [(e["event_id"], e["text"], e["attributes"].get("skipped_parts")) for e in events] == [
        ("c1:0", "look at this\nwhat is it?", {"image_url": 2, "input_audio": 1, "file": 1}),
        ("c1:1", "a cat", {"refusal": 1}),
    ]
    # a user message of an image alone and a refusal alone are no events; they are counted where they are kept
    assert conversation_events(conversation(messages=[*messages, {"role": "user", "content": "ok"}]),
                               layout())[-1]["attributes"]["context"] == [
        {"index": 2, "role": "user", "text": None, "skipped_parts": {"image_url": 1}},
        {"index": 3, "role": "assistant", "text": None, "skipped_parts": {"refusal": 1}},
    ]


def test_sharegpt_layout_with_its_role_names_and_paths() -> None:
    record = {"id": "sg-1", "meta": {"who": 7, "at": 1_717_243_200},
              "conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi i am a chef"},
                                {"from": "gpt", "value": "hello chef"}]}
    shape = layout(mapping={"session_id": "id", "user_id": "$.meta.who", "occurred_at": "$.meta.at"},
                   chat={"messages": "conversations", "role": "from", "content": "value",
                         "roles": {"human": "user", "GPT": "assistant"}})

    events = conversation_events(record, shape)

    assert [(e["event_id"], e["kind"], e["user_id"], e["text"], e["occurred_at"], e["attributes"].get("role"))
            for e in events] == [
        ("sg-1:1", "message", 7, "hi i am a chef", 1_717_243_200, "human"),
        ("sg-1:2", "response", 7, "hello chef", 1_717_243_200, "gpt"),
    ]


def test_times_per_message_or_the_conversations_with_the_message_index_as_microseconds() -> None:
    messages = [{"role": "user", "content": "a", "ts": "2024-06-01T12:00:05Z"},
                {"role": "assistant", "content": "b"}]

    own, shared = conversation_events(conversation(messages=messages), layout(chat={"occurred_at": "ts"}))

    assert (own["occurred_at"], own.get("occurred_at_offset_us"), own["attributes"].get("occurred_at_estimated")) \
        == ("2024-06-01T12:00:05Z", None, None)
    assert (shared["occurred_at"], shared["occurred_at_offset_us"], shared["attributes"]["occurred_at_estimated"]) \
        == (AT, 1, True)


def test_feedback_on_a_message_and_on_the_conversation_thumbs_read_as_plus_or_minus_one() -> None:
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello", "feedback": {"thumb": "down"}},
                {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao", "feedback": {"thumb": 4}}]
    shape = layout(mapping={"rating": "$.feedback.thumbs"}, chat={"rating": "$.feedback.thumb"})

    events = conversation_events(conversation(messages=messages, feedback={"thumbs": True}), shape)

    feedback = [(e["event_id"], e["rating"], e["reply_to"], e["attributes"]["scope"]) for e in events
                if e["kind"] == "feedback"]
    assert feedback == [("c1:1:feedback", -1, "c1:1", "message"), ("c1:3:feedback", 4, "c1:3", "message"),
                        ("c1:conversation-feedback", 1, None, "conversation")]


def test_a_conversation_without_an_id_gets_one_that_stays_when_it_goes_on() -> None:
    first = conversation(session=None, messages=[{"role": "user", "content": "hi"}])
    grown = conversation(session=None, messages=[{"role": "user", "content": "hi"},
                                                 {"role": "assistant", "content": "yo"}])
    other = conversation(session=None, messages=[{"role": "user", "content": "hello"}])

    [a] = conversation_events(first, layout())
    b, _ = conversation_events(grown, layout())
    [c] = conversation_events(other, layout())

    assert a["event_id"] == b["event_id"] != c["event_id"]
    assert a["event_id"].startswith("h:")
    # the same system prompt opening two conversations does not make them one
    prompt = {"role": "system", "content": "you are helpful"}
    first_ids = {conversation_events(conversation(session=None, occurred_at=None, messages=[
        prompt, {"role": "user", "content": "hi", "at": at}]), layout(chat={"occurred_at": "at"}))[0]["session_id"]
        for at in ("2024-06-01T12:00:00Z", "2024-06-02T12:00:00Z")}
    assert len(first_ids) == 2


@pytest.mark.parametrize("record, reason, detail", [
    (conversation(messages=[{"role": "system", "content": "x"}, {"role": "assistant", "content": None}]),
     "empty_conversation", "none of its 2 messages is a user or assistant message with text, and it has no feedback"),
    (conversation(messages=[]), "empty_conversation", "none of its 0 messages"),
    (conversation(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
     "empty_conversation", "none of its 1 messages"),
    (conversation(messages=[{"role": "user", "content": "hi"}, {"role": "narrator", "content": "x"}]),
     "unknown_role", "messages[1].role 'narrator' is not one of"),
    (conversation(messages=[{"role": {"name": "user"}, "content": "hi"}]), "unknown_role",
     "messages[0].role: expected a role name, got object"),
    (conversation(messages=[{"content": "hi"}]), "unknown_role", "messages[0].role: expected a role name, got null"),
    (conversation(messages=[{"role": "user", "content": None}]), "wrong_type",
     "messages[0].content: expected a string or a list of parts, got null"),
    (conversation(messages=[{"role": "user", "content": 12}]), "wrong_type",
     "messages[0].content: expected a string or a list of parts, got number"),
    (conversation(messages=[{"role": "user", "content": [[{"type": "text", "text": "x"}]]}]), "wrong_type",
     "messages[0].content[0]: expected a part"),
    (conversation(messages=[{"role": "user", "content": [{"type": "text", "text": {"nested": ["garbage"]}}]}]),
     "wrong_type", "messages[0].content[0].text: expected a string, got object"),
    (conversation(messages=[{"role": "user", "content": [{"text": "no type"}]}]), "wrong_type",
     "messages[0].content[0]: expected a part"),
    (conversation(messages=["hi"]), "wrong_type", "messages[0]: expected an object, got string"),
    (conversation(messages="hi"), "wrong_type", "messages: expected an array, got string"),
    (conversation(messages={"0": {"role": "user", "content": "hi"}}), "wrong_type",
     "messages: expected an array, got object"),
    ({"session_id": "c", "user_id": "u", "occurred_at": AT}, "missing_messages", "no messages array"),
    (conversation(session=["c1"]), "wrong_type", "session_id: expected a string or integer, got array"),
    (conversation(occurred_at=None), "missing_occurred_at",
     "messages[0] has no time of its own and the conversation has none"),
])
def test_a_conversation_it_cannot_read_is_one_problem(record: dict, reason: str, detail: str) -> None:
    found_reason, found_detail = problem_of(record)
    assert (found_reason, found_detail[:len(detail)]) == (reason, detail)


# -- ingest: accounting, quarantine, growth ---------------------------------------------------------

def hostile_corpus() -> tuple[list, dict]:
    """Chat records of every kind of trouble, and what each must become (None: loaded, else the reason)."""
    long_messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(10_000)]
    every_part = [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "u"}},
                  {"type": "input_audio", "input_audio": {"data": "", "format": "mp3"}},
                  {"type": "file", "file": {"file_id": "f"}}, {"type": "refusal", "refusal": "r"}]
    records = [
        ("good", conversation("good"), None),
        ("no message to load", conversation("nothing", messages=[{"role": "system", "content": "s"}]),
         "empty_conversation"),
        ("no user message", conversation("nouser", messages=[{"role": "assistant", "content": "hello?",
                                                              "rating": -1}]), None),
        ("unknown role", conversation("role", messages=[{"role": "user", "content": "a"},
                                                        {"role": "wizard", "content": "b"}]), "unknown_role"),
        ("every part kind", conversation("parts", messages=[{"role": "user", "content": every_part},
                                                            {"role": "assistant", "content": every_part}]), None),
        ("10k messages", conversation("long", messages=long_messages), None),
        ("grows: first", conversation("grows", messages=[{"role": "user", "content": "one"}]), None),
        ("same id, message 0 differs", conversation("good", messages=[{"role": "user", "content": "changed"},
                                                                      {"role": "assistant", "content": "nice"},
                                                                      {"role": "user", "content": "new"}]),
         "conflicting_duplicate"),
        ("no times", conversation("notime", occurred_at=None), "missing_occurred_at"),
        ("unreadable time", conversation("badtime", occurred_at="yesterday-ish"), "unparseable_timestamp"),
        ("content null", conversation("null", messages=[{"role": "user", "content": None}]), "wrong_type"),
        ("messages not an array", conversation("notarray", messages="hello"), "wrong_type"),
        ("nested garbage", conversation("garbage", messages=[{"role": "user", "content": [{"type": "text",
                                                              "text": [[{"a": None}]]}]}]), "wrong_type"),
        ("no user id", conversation("nouid", user=None), "missing_user_id"),
        ("user id an object", conversation("objuid", user={"id": 1}), "wrong_type"),
        ("empty user message", conversation("empty", messages=[{"role": "user", "content": " "}]), "empty_text"),
        ("not json", "{\"messages\": [", "malformed_json"),
        ("a lone surrogate", conversation("surrogate", messages=[{"role": "user", "content": "bad \ud800 half"}]),
         "malformed_json"),
        ("a list", [conversation("list")], "not_an_object"),
        ("key twice", '{"session_id": "k", "session_id": "k2", "user_id": "u", "messages": []}', "duplicate_key"),
        ("grows: later in the file", conversation("grows", messages=[{"role": "user", "content": "one"},
                                                                     {"role": "assistant", "content": "two"},
                                                                     {"role": "user", "content": "three"}]), None),
        ("exactly again", conversation("good"), "duplicate"),
    ]
    return [r for _, r, _ in records], {name: outcome for name, _, outcome in records}


def test_hostile_chat_records_are_counted_as_conversations_exactly(tmp_path: Path, make_settings) -> None:
    records, outcomes = hostile_corpus()
    write_jsonl(tmp_path / "chats.jsonl", records)
    settings = make_settings([chat_source()])

    [report] = ingest(settings, clock=CLOCK)

    assert report.status == "committed", report.error
    reasons = Counter(outcome for outcome in outcomes.values() if outcome not in (None, "duplicate"))
    loaded = sum(outcome is None for outcome in outcomes.values())
    assert counts(report) == (len(records), loaded, 1, sum(reasons.values()))
    assert dict(query(settings, "select reason, count(*) from quarantine group by reason")) == reasons
    # good: 2 + no user message: a response + parts: 2 + long: 10,000 + grows: 1, then its 2 new messages
    assert report.events_loaded == 2 + 1 + 2 + 10_000 + 1 + 2
    assert query(settings, "select count(*) from events") == [(report.events_loaded,)]
    assert query(settings, "select events_loaded from ingest_batches") == [(report.events_loaded,)]
    assert_every_batch_balances(settings)
    # quarantined whole: none of the conflicting conversation's messages loaded, the first version stands
    assert query(settings, "select event_id, text from events where session_id = 'good' order by event_id") == [
        ("good:0", "i am a nurse"), ("good:1", "nice")]
    [(detail, event_id, raw)] = query(settings, "select detail, event_id, raw_text from quarantine "
                                                "where reason = 'conflicting_duplicate'")
    assert (event_id, json.loads(raw)["messages"][0]["content"]) == ("good:0", "changed")
    assert detail.startswith("event_id good:0 already holds different content")
    # a bad message names where it is; the whole conversation is kept, and its user when it names one
    [(detail, user, raw)] = query(settings, "select detail, user_id, raw_text from quarantine "
                                            "where reason = 'unparseable_timestamp'")
    assert detail.startswith("badtime:0: occurred_at: cannot read yesterday-ish")
    assert (user, json.loads(raw)["session_id"]) == ("u1", "badtime")
    assert query(settings, "select detail from quarantine where raw_text like '%surrogate%'") == [
        ("a message is not valid JSON once read (a lone UTF-16 surrogate escape?): not valid JSON",)]
    # order kept under one conversation time; parts other than text counted
    assert query(settings, "select count(distinct occurred_at), min(occurred_at) = max(occurred_at) - interval "
                           "9999 microsecond from events where session_id = 'long'") == [(10_000, True)]
    assert query(settings, "select attributes->>'skipped_parts' from events where session_id = 'parts' "
                           "order by event_id") == [('{"image_url":1,"input_audio":1,"file":1,"refusal":1}',),
                                                    ('{"image_url":1,"input_audio":1,"file":1,"refusal":1}',)]

    [again] = ingest(settings, clock=CLOCK)
    assert counts(again) == (0, 0, 0, 0) and again.events_loaded == 0


def test_a_conversation_that_went_on_loads_only_its_new_messages(tmp_path: Path, make_settings) -> None:
    path = tmp_path / "chats.jsonl"
    short = conversation("c", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    write_jsonl(path, [short])
    settings = make_settings([chat_source()])
    [first] = ingest(settings, clock=CLOCK)
    grown = conversation("c", messages=[*short["messages"], {"role": "user", "content": "i have two dogs"},
                                        {"role": "assistant", "content": "cute"}])

    append(path, (json.dumps(grown) + "\n").encode())  # the same conversation later in the file
    [appended] = ingest(settings, clock=CLOCK)
    write_jsonl(path, [grown, conversation("d")])  # a rewritten file
    [rewritten] = ingest(settings, clock=CLOCK)

    assert (counts(first), first.events_loaded) == ((1, 1, 0, 0), 2)
    assert (counts(appended), appended.events_loaded) == ((1, 1, 0, 0), 2)
    assert (counts(rewritten), rewritten.events_loaded) == ((2, 1, 1, 0), 2)
    assert query(settings, "select event_id, batch_id = ? from events where session_id = 'c' order by event_id",
                 [appended.batch_id]) == [("c:0", False), ("c:1", False), ("c:2", True), ("c:3", True)]
    assert_every_batch_balances(settings)


def test_a_quarantined_conversation_read_again_is_a_duplicate(tmp_path: Path, make_settings) -> None:
    path = tmp_path / "chats.jsonl"
    bad = conversation("b", occurred_at="never")
    write_jsonl(path, [bad])
    settings = make_settings([chat_source()])
    ingest(settings, clock=CLOCK)

    write_jsonl(path, [conversation("new"), bad])  # rewritten: the bad line moved down
    [again] = ingest(settings, clock=CLOCK)

    assert counts(again) == (2, 1, 1, 0)
    assert query(settings, "select count(*) from quarantine") == [(1,)]


def test_a_conversation_repeated_in_one_chunk_is_decided_after_its_first_copy(tmp_path: Path, make_settings) -> None:
    # The first copy is quarantined (a bad time on its second message); the second, fixed and grown, must not
    # take its first message for a duplicate of the first copy's, which was never stored.
    broken = conversation("c", messages=[{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "yo", "at": "soon"}])
    fixed = conversation("c", messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                                        {"role": "user", "content": "more"}])
    write_jsonl(tmp_path / "chats.jsonl", [broken, fixed])
    settings = make_settings([chat_source(chat={"occurred_at": "at"})], ingest={"chunk_records": 1000})

    [report] = ingest(settings, clock=CLOCK)

    assert (counts(report), report.events_loaded) == ((2, 1, 0, 1), 3)
    assert query(settings, "select event_id from events order by event_id") == [("c:0",), ("c:1",), ("c:2",)]
    assert_every_batch_balances(settings)


def test_a_forgotten_users_conversation_read_again_stays_forgotten(tmp_path: Path, make_settings) -> None:
    from selfmodel.forget import forget_user
    from warehouse.db import connect

    path = tmp_path / "chats.jsonl"
    write_jsonl(path, [conversation("c", user="alice")])
    settings = make_settings([chat_source()])
    ingest(settings, clock=CLOCK)
    con = connect(settings.warehouse_path)
    try:
        forget_user(con, "alice", clock=CLOCK, settings=settings)
    finally:
        con.close()

    write_jsonl(path, [conversation("d", user="bob"), conversation("c", user="alice")])  # rewritten: read whole
    [again] = ingest(settings, clock=CLOCK)

    assert counts(again) == (2, 1, 0, 1)
    assert query(settings, "select reason, raw_text, user_id from quarantine where batch_id = ?",
                 [again.batch_id]) == [("forgotten_user", None, None)]
    assert query(settings, "select distinct user_id from events") == [("bob",)]


def test_chat_from_parquet(tmp_path: Path, make_settings) -> None:
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.table({
        "conversation_id": ["p1", "p2"],
        "user": ["u1", "u2"],
        "created_at": pa.array([1_717_243_200, 1_717_243_300], pa.int64()),
        "messages": pa.array([[{"role": "user", "content": "i live in berlin"}, {"role": "assistant", "content": "ok"}],
                              [{"role": "assistant", "content": "hello?"}]], pa.list_(message)),
    })
    pq.write_table(table, tmp_path / "chats.parquet")
    settings = make_settings([chat_source("chats.parquet", mapping={
        "session_id": "conversation_id", "user_id": "user", "occurred_at": "created_at"})])

    [report] = ingest(settings, clock=CLOCK)

    assert (counts(report), report.events_loaded) == ((2, 2, 0, 0), 3)
    assert query(settings, "select event_id, user_id, kind, reply_to, epoch(occurred_at) from events "
                           "order by event_id") == [("p1:0", "u1", "message", None, 1_717_243_200.0),
                                                    ("p1:1", "u1", "response", "p1:0", 1_717_243_200.000001),
                                                    ("p2:0", "u2", "response", None, 1_717_243_300.0)]

    grown = table.set_column(3, "messages", pa.array(
        [[{"role": "user", "content": "i live in berlin"}, {"role": "assistant", "content": "ok"},
          {"role": "user", "content": "and i cycle"}],
         [{"role": "assistant", "content": "hello?"}]], pa.list_(message)))
    pq.write_table(grown, tmp_path / "chats.parquet")  # rewritten: read whole, only the new message loads
    [again] = ingest(settings, clock=CLOCK)

    assert (counts(again), again.events_loaded) == ((2, 1, 1, 0), 1)
    assert query(settings, "select event_id from events where batch_id = ?", [again.batch_id]) == [("p1:2",)]


@pytest.mark.parametrize("source, message", [
    ({"mapping": {"text": "$.messages"}},
     "format chat takes mapping for user_id, session_id, occurred_at, rating only"),
    ({"defaults": {"kind": "message"}}, "format chat takes defaults for user_id, session_id, occurred_at, rating only"),
    ({"chat": {"messages": "$.turns[*]"}}, "sources.0.chat.messages"),
    ({"chat": {"roles": {"human": "person"}}}, "sources.0.chat.roles.human"),
    ({"format": "jsonl", "chat": {"role": "from"}}, "`chat` settings are for format chat only"),
])
def test_chat_settings_are_checked_when_the_config_loads(make_settings, source: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings([{**chat_source(), **source}])
    assert message in str(caught.value)


# -- ConvAI2 as chat gives the convai2 adapter's beliefs ----------------------------------------------

def convai2_as_chat(dialog: dict) -> dict:
    """A ConvAI2 dialog in the chat shape: human turns user, bot turns assistant, the same times and scores."""
    from selfmodel.sources.convai2 import dialog_key, turn_times

    turns = dialog["dialog"]
    times = turn_times(dialog.get("start_time"), dialog.get("end_time"), len(turns))
    return {
        "id": dialog_key(dialog),
        "user": dialog["participant1_id"]["user_id"],
        "started": dialog.get("start_time"),
        "score": dialog.get("eval_score"),
        "messages": [{"role": "assistant" if turn.get("sender_class") == "Bot" else "user", "content": turn["text"],
                      "at": time, "score": turn.get("evaluation_score")} for turn, time in zip(turns, times)],
    }


@pytest.mark.shared_data
def test_convai2_as_chat_gives_the_convai2_adapters_beliefs(shared_real_data: Path, tmp_path: Path,
                                                            make_settings) -> None:
    from selfmodel.beliefs.refresh import refresh_beliefs
    from warehouse.db import connect

    path = shared_real_data / "convai2_wild" / "data_volunteers.json"
    dialogs = json.loads(path.read_text(encoding="utf-8"))
    write_jsonl(tmp_path / "convai2_chat.jsonl", [convai2_as_chat(d) for d in dialogs])  # tmp only: licence unstated
    chat = chat_source("convai2_chat.jsonl", mapping={"session_id": "id", "user_id": "user",
                                                      "occurred_at": "started", "rating": "score"},
                       chat={"occurred_at": "at", "rating": "score"})
    beliefs = {}
    for name, source in (("convai2", {"name": "convai2", "format": "convai2", "path": str(path)}), ("chat", chat)):
        settings = make_settings([source], warehouse={"path": f"{name}.duckdb"})
        [report] = ingest(settings, clock=CLOCK)
        assert report.status == "committed", report.error
        con = connect(settings.warehouse_path)
        try:
            refresh_beliefs(con, settings, clock=CLOCK)
        finally:
            con.close()
        beliefs[name] = {(user, key, value): confidence for user, key, value, confidence in
                         query(settings, "select user_id, key, value, confidence from beliefs")}
        if name == "chat":
            assert report.rows_read == len(dialogs)
            assert_every_batch_balances(settings)

    assert len(beliefs["chat"]) > 100
    assert beliefs["chat"].keys() == beliefs["convai2"].keys()
    assert all(beliefs["chat"][k] == pytest.approx(beliefs["convai2"][k], abs=1e-9) for k in beliefs["convai2"])


def test_ingest_json_and_table_say_how_many_events_the_conversations_became(tmp_path: Path, make_settings) -> None:
    from click.testing import CliRunner

    from selfmodel.cli import main

    write_jsonl(tmp_path / "chats.jsonl", [conversation("a"),
                                           conversation("b", messages=[{"role": "user", "content": "x"}])])
    make_settings([chat_source()])

    result = CliRunner().invoke(main, ["--config", str(tmp_path / "selfmodel.yaml"), "ingest", "--json"])

    assert result.exit_code == 0, result.output
    [batch] = json.loads(result.stdout)["batches"]
    assert (batch["rows_read"], batch["loaded"], batch["events_loaded"]) == (2, 2, 3)
    table = CliRunner().invoke(main, ["--config", str(tmp_path / "selfmodel.yaml"), "ingest"]).stdout
    assert "events" in table.splitlines()[2]


def test_a_conversation_cut_off_at_the_end_of_the_file_loads_once_it_is_complete(tmp_path: Path,
                                                                                  make_settings) -> None:
    path = tmp_path / "chats.jsonl"
    line = json.dumps(conversation("c"))
    path.write_text(json.dumps(conversation("a")) + "\n" + line[:40], encoding="utf-8")  # a writer mid-line
    settings = make_settings([chat_source()])
    [first] = ingest(settings, clock=CLOCK)

    append(path, (line[40:] + "\n").encode())
    [completed] = ingest(settings, clock=CLOCK)

    assert counts(first) == (2, 1, 0, 1)
    assert query(settings, "select reason from quarantine") == [("truncated_last_line",)]
    assert (counts(completed), completed.events_loaded) == ((1, 1, 0, 0), 2)
    assert_every_batch_balances(settings)
