"""ConvAI2 wild-evaluation dumps: one JSON array of dialogs between a human and a bot.

Streamed dialog by dialog with ijson, so a large dump never sits whole in memory. Turns carry no
time of their own, only the dialog's start and end: each turn's time is interpolated between them
(attributes.occurred_at_estimated = true) so the order of turns survives.

- human turns -> `message` events of the human's user_id;
- bot turns -> `response` events, also under the human's user_id (they are what the product said to
  that user); attributes.responder names the bot; reply_to is the human turn answered (if any);
- a turn's evaluation_score -> `feedback` rating that turn (reply_to = the turn's event_id);
- the dialog's eval_score -> `feedback` on the whole dialog (attributes.scope = "dialog");
- user_profile / bot_profile persona lines -> labels (ground truth for evals), never events.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import ijson
import pyarrow as pa

from selfmodel.sources.base import (DECOMPRESSION_ERRORS, Adapter, CountingReader, FileRead, Label, PieceReader,
                                   RecordBatchBuilder, expand_path, open_decompressed, refuse_unreadable_compression)

HUMAN, BOT = "Human", "Bot"


def dialog_key(dialog: dict[str, Any]) -> str:
    """Dialogs have no id; their participants and start time identify them stably."""
    human = _participant(dialog, "participant1_id")
    bot = _participant(dialog, "participant2_id")
    basis = f"{human}|{bot}|{dialog.get('start_time')}"
    return "dlg:" + hashlib.sha1(basis.encode()).hexdigest()[:16]


def _participant(dialog: dict[str, Any], key: str) -> str | None:
    value = dialog.get(key)
    return value.get("user_id") if isinstance(value, dict) else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def turn_times(start: Any, end: Any, count: int) -> list[str | None]:
    """Evenly spaced ISO times from start to end for `count` turns (raw start when unparseable)."""
    begin, finish = _parse_time(start), _parse_time(end)
    if begin is None:
        return [start if isinstance(start, str) else None] * count
    if finish is None or finish < begin or count < 2:
        return [begin.isoformat()] * count
    step = (finish - begin) / (count - 1)
    return [(begin + step * index).isoformat() for index in range(count)]


def dialog_records(dialog: dict[str, Any]) -> Iterator[tuple[str, dict | None, str | None, str | None]]:
    """(raw text, canonical doc or None, reason, detail) for each record a dialog holds."""
    if not isinstance(dialog, dict) or not isinstance(dialog.get("dialog"), list):
        yield json.dumps(dialog, ensure_ascii=False), None, "wrong_type", "a dialog must be an object with a 'dialog' list"
        return
    session = dialog_key(dialog)
    ids = {"participant1": _participant(dialog, "participant1_id"),
           "participant2": _participant(dialog, "participant2_id")}
    classes = {"participant1": (dialog.get("participant1_id") or {}).get("class"),
               "participant2": (dialog.get("participant2_id") or {}).get("class")}
    human_slot = next((slot for slot, cls in classes.items() if cls == "User"), "participant1")
    human = ids.get(human_slot)
    turns = dialog["dialog"]
    times = turn_times(dialog.get("start_time"), dialog.get("end_time"), len(turns))
    last_human_turn = None  # what the next bot turn answers
    for position, turn in enumerate(turns):
        raw = json.dumps(turn, ensure_ascii=False)
        if not isinstance(turn, dict):
            yield raw, None, "wrong_type", "a turn must be an object"
            continue
        turn_id = f"{session}:{turn.get('id', position)}"
        is_bot = turn.get("sender_class") == BOT or (turn.get("sender") != human_slot and turn.get("sender_class") != HUMAN)
        yield raw, {
            "event_id": turn_id,
            "user_id": human,
            "occurred_at": times[position],
            "kind": "response" if is_bot else "message",
            "text": turn.get("text"),
            "session_id": session,
            "reply_to": last_human_turn if is_bot else None,
            "attributes": {
                "responder": ids.get(turn.get("sender")) if is_bot else None,
                "turn": turn.get("id", position),
                "occurred_at_estimated": True,
            },
        }, None, None
        if not is_bot:
            last_human_turn = turn_id
        if turn.get("evaluation_score") is not None:
            yield json.dumps({"turn": turn.get("id"), "evaluation_score": turn["evaluation_score"]}), {
                "event_id": f"{turn_id}:score",
                "user_id": human,
                "occurred_at": times[position],
                "kind": "feedback",
                "session_id": session,
                "reply_to": turn_id,
                "rating": turn["evaluation_score"],
                "attributes": {"scope": "turn", "occurred_at_estimated": True},
            }, None, None
    if dialog.get("eval_score") is not None:
        profile_match = dialog.get("profile_match")
        yield json.dumps({"eval_score": dialog["eval_score"], "profile_match": profile_match}), {
            "event_id": f"{session}:dialog_score",
            "user_id": human,
            "occurred_at": dialog.get("end_time") or dialog.get("start_time"),
            "kind": "feedback",
            "session_id": session,
            "rating": dialog["eval_score"],
            "attributes": {"scope": "dialog", "profile_match": profile_match if profile_match != "" else None,
                           "responder": ids.get("participant2" if human_slot == "participant1" else "participant1")},
        }, None, None


def dialog_labels(dialog: dict[str, Any]) -> list[Label]:
    if not isinstance(dialog, dict):
        return []
    session = dialog_key(dialog)
    seen_at = _parse_time(dialog.get("start_time"))
    if seen_at is not None and seen_at.tzinfo is None:
        seen_at = seen_at.replace(tzinfo=timezone.utc)
    labels = []
    for profile_key, participant_key in (("user_profile", "participant1_id"), ("bot_profile", "participant2_id")):
        user = _participant(dialog, participant_key)
        lines = dialog.get(profile_key)
        if user and isinstance(lines, list):
            labels.extend(Label(user, "persona", line.strip(), seen_at, session)
                          for line in lines if isinstance(line, str) and line.strip())
    return labels


class ConvAI2Adapter(Adapter):
    appendable = False

    def discover(self) -> list[Path]:
        return expand_path(self.path, ("*.json",))

    def read(self, reads: list[FileRead], labels: list[Label]) -> Iterator[pa.Table]:
        builder = RecordBatchBuilder(self.chunk_records)
        for read in reads:
            compression = refuse_unreadable_compression(read.path, read.label)
            number = 0
            # Hashed and counted as read, so the manifest describes exactly the bytes these records came from.
            with open(read.path, "rb", buffering=0) as raw:
                counting = CountingReader(raw)
                with open_decompressed(counting, compression) as handle:
                    try:
                        for number, dialog in enumerate(ijson.items(PieceReader(handle), "item", use_float=True),
                                                               start=1):
                            for raw_text, doc, reason, detail in dialog_records(dialog):
                                builder.add(file=read.label, line_no=number, byte_offset=None, raw_text=raw_text,
                                            doc=json.dumps(doc, ensure_ascii=False) if doc else None,
                                            pre_reason=reason, pre_detail=detail)
                            labels.extend(dialog_labels(dialog))
                            if builder.full:
                                yield builder.take()
                    except (ijson.JSONError, UnicodeDecodeError) as exc:
                        builder.add(file=read.label, line_no=number + 1, byte_offset=None, raw_text="",
                                    pre_reason="malformed_json",
                                    pre_detail=f"the file stops being valid JSON after dialog {number}: {exc}")
                    except DECOMPRESSION_ERRORS as exc:
                        if compression is None or counting.raw_failed:
                            raise
                        builder.add(file=read.label, line_no=number + 1, byte_offset=None, raw_text="",
                                    pre_reason="unreadable_file",
                                    pre_detail=f"the {compression} data is broken after dialog {number}: {exc}")
                    while counting.read(1 << 20):  # the rest of the file still counts for the manifest's hash
                        pass
            read.sha256 = counting.digest.hexdigest()
            read.consumed_bytes = read.resume_offset = counting.count
            read.records = number
        if len(builder):
            yield builder.take()
