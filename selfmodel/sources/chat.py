"""Chat logs in the OpenAI chat format: one record is one conversation, exploded into one event per message.

A record (a JSONL line, or a Parquet row) holds a `messages` array of {role, content} beside the
conversation's user, id, time and feedback; where each lives is the source's `mapping` (user_id,
session_id = the conversation id, occurred_at, rating) and its `chat` settings (the messages, and inside
a message its role, content, time and feedback).

- `user` messages -> `message` events of the conversation's user; `assistant` messages -> `response`
  events, reply_to the user message before them;
- `system`, `developer` and `tool` messages and an assistant's tool calls are never events: they go into
  `attributes.context` of the conversation's next event (never a stored one, so a conversation that goes
  on does not change what is stored; those after the last event wait for the next);
- content is a string or a list of parts: text parts are joined, other parts (image_url, input_audio,
  file, refusal, ...) are counted in `attributes.skipped_parts` and skipped;
- a message's rating -> `feedback` on that message; the conversation's rating -> `feedback` on the whole
  conversation (attributes.scope = "conversation"), as ConvAI2's dialog score;
- a conversation without a user message still loads its responses and feedback (how the user rated what
  they were shown is evidence about them, as in ConvAI2's dialogs of bot turns alone); one that gives no
  event at all is quarantined as `empty_conversation`;
- event ids are (conversation id, message index): `<conversation>:<index>`, `<conversation>:<index>:feedback`,
  `<conversation>:conversation-feedback`, so reading a conversation again, or after it grew, finds the
  messages already stored as duplicates;
- a message without a time of its own takes the conversation's time plus its index in microseconds
  (attributes.occurred_at_estimated = true), so the messages keep their order.

The records this adapter cannot explode (not JSON, not an object, a key named twice, bad bytes) pass on
whole, to be quarantined by normalize_records.sql like any JSONL line. A conversation with a problem of
its own (no messages array, an unknown role, content of the wrong type, no event at all) becomes one
record with that reason. The events of one conversation share the record's file and line_no and carry
their position (part_no); ingest (selfmodel.ingest, chat_conversation_outcomes.sql) then counts and
quarantines conversations, not events.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from selfmodel.events import json_path_steps, value_at
from selfmodel.sources.base import Adapter, FileRead, Label, RecordBatchBuilder, expand_path
from selfmodel.sources.jsonl import JsonlAdapter
from selfmodel.sources.parquet import ParquetAdapter
from selfmodel.sources.strict_json import strict_problem

STANDARD_ROLES = ("user", "assistant", "system", "developer", "tool")
# Older OpenAI logs name a tool's answer `function`.
ROLE_ALIASES = {"function": "tool"}
TEXT_PART_TYPES = ("text", "input_text", "output_text")
# Thumbs as written by chat products; any other value is read as a number (or quarantined as wrong_type).
THUMBS = {"up": 1, "thumbs_up": 1, "like": 1, "positive": 1, "down": -1, "thumbs_down": -1, "dislike": -1,
          "negative": -1}
PARQUET_SUFFIXES = (".parquet", ".pq")


class ConversationProblem(ValueError):
    """Why a conversation cannot be read: it is quarantined whole with `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ChatLayout:
    """Where a chat source's records keep each thing, as json_path_steps."""

    messages: tuple
    role: tuple
    content: tuple
    message_time: tuple | None
    message_rating: tuple | None
    user: tuple
    conversation: tuple
    time: tuple
    rating: tuple
    defaults: dict[str, str]
    roles: dict[str, str]

    @classmethod
    def of(cls, source) -> "ChatLayout":
        chat, mapping = source.chat, source.mapping

        def steps(value: str | None) -> tuple | None:
            return None if value is None else json_path_steps(value)

        roles = {name: name for name in STANDARD_ROLES} | ROLE_ALIASES
        roles |= {name.strip().lower(): role for name, role in chat.roles.items()}
        return cls(
            messages=steps(chat.messages), role=steps(chat.role), content=steps(chat.content),
            message_time=steps(chat.occurred_at), message_rating=steps(chat.rating),
            user=steps(mapping.get("user_id", "user_id")), conversation=steps(mapping.get("session_id", "session_id")),
            time=steps(mapping.get("occurred_at", "occurred_at")), rating=steps(mapping.get("rating", "rating")),
            defaults=dict(source.defaults), roles=roles)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def _field(record: dict, steps: tuple, layout: ChatLayout, name: str) -> Any:
    value = value_at(record, steps)
    return layout.defaults.get(name) if value is None else value


def conversation_id(record: dict, layout: ChatLayout, user: Any, time: Any, messages: list) -> str:
    """The record's conversation id; without one, a hash of its user, time and first user message (its first
    message when it has none; a system prompt alone is the same in many conversations), which stay the same
    when the conversation goes on (so it still grows instead of starting anew)."""
    value = _field(record, layout.conversation, layout, "session_id")
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value is not None and not isinstance(value, str):
        raise ConversationProblem("wrong_type", f"session_id: expected a string or integer, got {_json_type(value)}")

    def is_user_message(message: Any) -> bool:
        role = value_at(message, layout.role) if isinstance(message, dict) else None
        return isinstance(role, str) and layout.roles.get(role.strip().lower()) == "user"

    first = next((message for message in messages if is_user_message(message)), messages[0] if messages else None)
    basis = json.dumps([user, time, first], sort_keys=True, default=str)
    return "h:" + hashlib.sha1(basis.encode()).hexdigest()[:16]


def rating_value(value: Any) -> Any:
    """A thumbs (true/false, "up"/"down", ...) as +1/-1; anything else as written (normalize reads numbers)."""
    if isinstance(value, bool):
        return 1 if value else -1
    if isinstance(value, str) and value.strip().lower() in THUMBS:
        return THUMBS[value.strip().lower()]
    return value


def content_text(content: Any, where: str, skipped: Counter) -> str | None:
    """The text of a message's content (a string, or the text parts of a list joined by newlines; None when
    it has none); other parts are counted in `skipped` by type."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ConversationProblem("wrong_type", f"{where}: expected a string or a list of parts, got "
                                                f"{_json_type(content)}")
    texts = []
    for number, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise ConversationProblem("wrong_type", f"{where}[{number}]: expected a part "
                                                    f'{{"type": ..., ...}}, got {_json_type(part)}')
        if part["type"] in TEXT_PART_TYPES:
            if not isinstance(part.get("text"), str):
                raise ConversationProblem("wrong_type", f"{where}[{number}].text: expected a string, got "
                                                        f"{_json_type(part.get('text'))}")
            texts.append(part["text"])
        else:
            skipped[part["type"]] += 1
    return "\n".join(texts) if texts else None


def conversation_events(record: dict, layout: ChatLayout) -> list[dict]:
    """The events (canonical documents) a conversation record holds; ConversationProblem when it cannot be read.

    Types of the user, the times and the ratings are left to normalize_records.sql, which judges them as for
    every format (a conversation with any bad event is then quarantined whole).
    """
    messages = value_at(record, layout.messages)
    if messages is None:
        raise ConversationProblem("missing_messages", "no messages array")
    if not isinstance(messages, list):
        raise ConversationProblem("wrong_type", f"messages: expected an array, got {_json_type(messages)}")
    user = _field(record, layout.user, layout, "user_id")
    time = _field(record, layout.time, layout, "occurred_at")
    session = conversation_id(record, layout, user, time, messages)
    events: list[dict] = []
    context: list[dict] = []  # system, developer and tool messages and tool calls waiting for the next event
    last_user_event = None  # what an assistant message answers
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ConversationProblem("wrong_type", f"{where}: expected an object, got {_json_type(message)}")
        written_role = value_at(message, layout.role)
        if not isinstance(written_role, str):
            raise ConversationProblem("unknown_role", f"{where}.role: expected a role name, got "
                                                      f"{_json_type(written_role)}")
        role = layout.roles.get(written_role.strip().lower())
        if role is None:
            raise ConversationProblem("unknown_role", f"{where}.role {written_role[:80]!r} is not one of "
                                                      f"{', '.join(sorted(layout.roles))} (map it in chat.roles)")
        content = value_at(message, layout.content)
        skipped: Counter = Counter()
        if content is None and role != "user":
            text = None  # an assistant's tool calls or refusal, a tool's empty answer
        else:
            text = content_text(content, f"{where}.content", skipped)
        tool_calls = {key: message[key] for key in ("tool_calls", "function_call") if message.get(key) is not None}
        own_time = value_at(message, layout.message_time) if layout.message_time else None
        timing = ({"occurred_at": own_time} if own_time is not None
                  else {"occurred_at": time, "occurred_at_offset_us": index})
        is_event = (role == "user" and text is not None) or (role == "assistant" and bool(text and text.strip()))
        rating = value_at(message, layout.message_rating) if layout.message_rating else None
        if (is_event or rating is not None) and own_time is None and time is None:
            raise ConversationProblem("missing_occurred_at", f"{where} has no time of its own and the "
                                                             "conversation has none")
        if not is_event:
            kept = {"index": index, "role": written_role, "text": text, **tool_calls}
            kept |= {key: message[key] for key in ("tool_call_id", "name") if isinstance(message.get(key), str)}
            if skipped:
                kept["skipped_parts"] = dict(skipped)
            context.append(kept)
            if role == "user":
                last_user_event = None  # an image alone: what follows answers it, not an earlier message
        else:
            event_id = f"{session}:{index}"
            attributes: dict[str, Any] = {"message_index": index}
            if own_time is None:
                attributes["occurred_at_estimated"] = True
            if written_role != role:
                attributes["role"] = written_role
            if context:
                attributes["context"] = context
                context = []
            if tool_calls:
                attributes.update(tool_calls)
            if skipped:
                attributes["skipped_parts"] = dict(skipped)
            events.append({
                "event_id": event_id, "user_id": user, **timing,
                "kind": "message" if role == "user" else "response", "text": text, "session_id": session,
                "reply_to": last_user_event if role == "assistant" else None, "attributes": attributes,
            })
            if role == "user":
                last_user_event = event_id
        if rating is not None:
            events.append({
                "event_id": f"{session}:{index}:feedback", "user_id": user, **timing, "kind": "feedback",
                "session_id": session, "reply_to": f"{session}:{index}" if is_event else None,
                "rating": rating_value(rating), "attributes": {"scope": "message", "message_index": index},
            })
    rating = _field(record, layout.rating, layout, "rating")
    if rating is not None:
        first_time = next((event["occurred_at"] for event in events), time)
        events.append({
            "event_id": f"{session}:conversation-feedback", "user_id": user,
            "occurred_at": time if time is not None else first_time, "kind": "feedback", "session_id": session,
            "reply_to": None, "rating": rating_value(rating), "attributes": {"scope": "conversation"},
        })
    if not events:
        # Nothing to load: a conversation record that cannot be counted as loaded, and often a role mapping that
        # misses the user's and the assistant's names.
        raise ConversationProblem("empty_conversation", f"none of its {len(messages)} messages is a user or "
                                                        "assistant message with text, and it has no feedback")
    return events


class _RepeatedKey(ValueError):
    pass


def _reject_repeated_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return result


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON value")  # NaN, Infinity: not standard JSON (strict_json)


def record_problem(text: str, is_unterminated: bool) -> tuple[dict | None, str | None, str | None]:
    """(the record, None, None), or (None, reason, detail) when the text is not one standard JSON object
    naming each key once: the reasons and details normalize_records.sql gives any JSONL line."""
    if not text.strip():
        return None, "blank_line", "an empty line is not a record"
    try:
        record = json.loads(text, object_pairs_hook=_reject_repeated_keys, parse_constant=_reject_constant)
    except _RepeatedKey as exc:
        return None, "duplicate_key", f"key {json.dumps(str(exc))[:80]} appears more than once in one object"
    except (ValueError, RecursionError):
        problem = strict_problem(text) or "not valid JSON"
        if is_unterminated:
            return None, "truncated_last_line", f"the last line has no newline and is not complete JSON: {problem}"
        return None, "malformed_json", f"not valid JSON: {problem}"
    if not isinstance(record, dict):
        return None, "not_an_object", f"a record must be a JSON object, got {_json_type(record).upper()}"
    return record, None, None


class ChatAdapter(Adapter):
    """Format chat: JSON Lines files (read on from where they grew, as jsonl) and Parquet files (*.parquet,
    *.pq, read whole), told apart by their names."""

    appendable = True  # a grown JSONL file is read on; a Parquet file's prefix hash never matches: read whole

    def __init__(self, path: Path, options, *, chunk_records: int, max_record_bytes: int) -> None:
        super().__init__(path, options, chunk_records=chunk_records, max_record_bytes=max_record_bytes)
        self.layout = ChatLayout.of(options)

    def discover(self) -> list[Path]:
        return expand_path(self.path, ("*.jsonl", "*.ndjson", "*.json", *(f"*{s}" for s in PARQUET_SUFFIXES)))

    def read(self, reads: list[FileRead], labels: list[Label]) -> Iterator[pa.Table]:
        options = dict(chunk_records=self.chunk_records, max_record_bytes=self.max_record_bytes)

        def records() -> Iterator[pa.Table]:
            for read in reads:
                inner = (ParquetAdapter if read.path.name.lower().endswith(PARQUET_SUFFIXES) else JsonlAdapter)(
                    read.path, self.options, **options)
                yield from inner.read([read], labels)

        yield from explode_conversations(records(), self.layout, self.chunk_records)


def explode_conversations(tables: Iterator[pa.Table], layout: ChatLayout, chunk_records: int) -> Iterator[pa.Table]:
    """Record chunks whose records are conversations -> chunks of their events (records that cannot be
    exploded pass on whole, to be quarantined). Used by format chat and by a postgres table of conversations."""
    builder = RecordBatchBuilder(chunk_records)
    sessions: set[str] = set()  # conversations in the chunk being built
    for table in tables:
        for row in table.to_pylist():
            session, events = _events_of(row, layout)
            if session is None:
                builder.add(**row)
            else:
                # A conversation twice in one chunk would meet itself in classify_records before its
                # first copy is decided: the second waits for the next chunk.
                if session in sessions:
                    yield builder.take()
                    sessions.clear()
                sessions.add(session)
                for event in events:
                    builder.add(**event)
            if builder.full:
                yield builder.take()
                sessions.clear()
    if len(builder):
        yield builder.take()


def _events_of(row: dict, layout: ChatLayout) -> tuple[str | None, list[dict]]:
    """(conversation id, the rows of its events), or (None, []) when `row` stays one record to quarantine:
    for its own pre_reason, or for the reason written into it here."""
    if row["pre_reason"] is not None:
        return None, []
    text = row["doc"] if row["doc"] is not None else row["raw_text"]
    record, reason, detail = record_problem(text, row["is_unterminated"])
    if record is None:
        row["pre_reason"], row["pre_detail"] = reason, detail
        return None, []
    try:
        events = conversation_events(record, layout)
    except ConversationProblem as problem:
        row["pre_reason"], row["pre_detail"] = problem.reason, problem.detail
        return None, []
    rows = []
    for part_no, event in enumerate(events):
        offset = event.pop("occurred_at_offset_us", None)
        rows.append({
            "file": row["file"], "line_no": row["line_no"], "byte_offset": row["byte_offset"],
            # The conversation's text once, on its first event: quarantined whole, it is what is kept.
            "raw_text": row["raw_text"] if part_no == 0 else "",
            "doc": json.dumps(event), "part_no": part_no, "occurred_at_offset_us": offset,
        })
    return events[0]["session_id"], rows
