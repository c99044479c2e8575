"""file_hint: the cause a file's quarantined records share, recognised from its first bytes, and what to change."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from selfmodel.settings import SourceSettings
from selfmodel.sources.hints import file_hint, mostly_quarantined

RECORDS = [{"event_id": f"e{n}", "user_id": "u1", "occurred_at": "2024-06-01T12:00:00Z", "kind": "message",
            "text": "hi"} for n in range(3)]
JSONL = "".join(json.dumps(record) + "\n" for record in RECORDS)
CSV = "event_id,user_id,occurred_at,kind,text\n" + "".join(
    f"e{n},u1,2024-06-01T12:00:00Z,message,hi\n" for n in range(3))

CHAT_JSONL = "".join(json.dumps({"user_id": "u1", "occurred_at": "2024-06-01T12:00:00Z", "messages": [
    {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n" for _ in range(3))


def hint(tmp_path: Path, data: bytes, source_format: str, reason: str, **options) -> str | None:
    path = tmp_path / f"f.{source_format}"
    path.write_bytes(data)
    source = SourceSettings(name="s", format=source_format, path=str(path), **options)
    return file_hint(path, source, Counter({reason: 3}))


@pytest.mark.parametrize("data, source_format, reason, options, expected", [
    (JSONL.encode("utf-16"), "jsonl", "nul_byte", {},
     "the file is UTF-16LE text (byte-order mark FF FE), but sources must be UTF-8: convert it, "
     "e.g. iconv -f UTF-16LE -t UTF-8"),
    (JSONL.encode("utf-16-be"), "jsonl", "nul_byte", {},
     "the file is UTF-16BE text (a NUL byte beside every character), but sources must be UTF-8: convert it, "
     "e.g. iconv -f UTF-16BE -t UTF-8"),
    (CSV.encode("utf-32"), "csv", "nul_byte", {},
     "the file is UTF-32LE text (byte-order mark FF FE 00 00), but sources must be UTF-8: convert it, "
     "e.g. iconv -f UTF-32LE -t UTF-8"),
    (gzip.compress(CSV.encode("utf-16-le")), "csv", "nul_byte", {},
     "the file is UTF-16LE text (a NUL byte beside every character), but sources must be UTF-8: convert it, "
     "e.g. iconv -f UTF-16LE -t UTF-8"),
    ("café;naïve\n".encode("latin-1") * 3, "jsonl", "invalid_utf8", {},
     "the file is not UTF-8 (its bytes look like a one-byte encoding such as Windows-1252 or Latin-1): "
     "convert it, e.g. iconv -f WINDOWS-1252 -t UTF-8"),
    (CSV.replace(",", ";").encode(), "csv", "missing_user_id", {},
     'the header has no commas but 4 semicolons: set csv_delimiter: ";" for this source'),
    (CSV.replace(",", "\t").encode(), "csv", "missing_user_id", {},
     'the header has no commas but 4 tabs: set csv_delimiter: "\\t" for this source'),
    (CSV.encode(), "csv", "missing_user_id", {"csv_delimiter": ";"},  # the file uses ","
     'the header has no semicolons but 4 commas: set csv_delimiter: "," for this source'),
    (json.dumps(RECORDS, indent=2).encode(), "jsonl", "malformed_json", {},
     "the file is one JSON array, not JSON Lines (one object per line): convert it, e.g. jq -c '.[]' FILE > "
     "FILE.jsonl"),
    ("".join(json.dumps(record, indent=2) + "\n" for record in RECORDS).encode(), "jsonl", "malformed_json", {},
     "the file holds JSON objects spread over several lines (pretty-printed); JSON Lines needs one object per "
     "line: convert it, e.g. jq -c . FILE > FILE.jsonl"),
    (CSV.encode(), "jsonl", "malformed_json", {},
     "the file looks like CSV (its first line is not a JSON object and holds 4 commas), not JSON Lines: use "
     "format: csv"),
    (JSONL.encode(), "csv", "csv_extra_columns", {},
     "the file looks like JSON Lines (its first line starts with '{'), not CSV: use format: jsonl"),
    (JSONL.replace('"user_id"', '"author"').encode(), "jsonl", "missing_user_id", {},
     "the records have no field 'user_id' (their fields: 'event_id', 'author', 'occurred_at', 'kind', 'text'): "
     "map user_id to the field that holds it, e.g. mapping: {user_id: <field>}"),
    (CSV.replace("user_id", "uid").encode(), "csv", "missing_user_id", {},
     "the records have no field 'user_id' (the header names 5 columns): "
     "map user_id to the field that holds it, e.g. mapping: {user_id: <field>}"),
    (CHAT_JSONL.encode(), "jsonl", "wrong_type", {"mapping": {"text": "$.messages"}, "defaults": {"kind": "message"}},
     "the records are conversations (a 'messages' array of messages), not one event each: use format: chat"),
    (CHAT_JSONL.replace('"messages"', '"conversations"').replace('"role"', '"from"').encode(), "jsonl",
     "missing_kind", {},
     "the records are conversations (a 'conversations' array of messages), not one event each: use format: chat "
     "and chat: {messages: conversations, role: from, content: value}"),
], ids=["utf16-bom", "utf16be-no-bom", "utf32-csv", "utf16-gzip", "latin1", "semicolons", "tabs",
        "commas-for-semicolon-source", "json-array", "pretty-json", "csv-in-jsonl", "jsonl-in-csv",
        "unmapped-json-field", "unmapped-csv-column", "chat-in-jsonl", "sharegpt-in-jsonl"])
def test_a_recognisable_cause_is_named_with_its_fix(tmp_path: Path, data: bytes, source_format: str, reason: str,
                                                    options: dict, expected: str) -> None:
    assert hint(tmp_path, data, source_format, reason, **options) == expected


@pytest.mark.parametrize("data, source_format, reason, options", [
    (JSONL.encode(), "jsonl", "timestamp_in_future", {}),  # a sound file whose records are all too new
    (CSV.encode(), "csv", "forgotten_user", {}),
    (CSV.replace("user_id", "who").encode(), "csv", "missing_user_id", {"mapping": {"user_id": "who"}}),
    (JSONL.replace('"user_id": "u1", ', "").encode(), "jsonl", "missing_user_id",
     {"defaults": {"user_id": "u0"}}),
    (JSONL.replace('"user_id"', '"author"').encode(), "jsonl", "missing_user_id",
     {"mapping": {"user_id": "$.meta.author"}}),  # a JSON path: its absence is not judged from top-level fields
    (CSV.replace(",", ";").replace("hi", "a,b").encode(), "csv", "unparseable_timestamp",
     {"csv_delimiter": ";"}),  # the delimiter is right, commas in the cells do not matter
    (b"", "jsonl", "malformed_json", {}),
    (b"x" * 10 + b"\n", "jsonl", "malformed_json", {}),
], ids=["sound-jsonl", "sound-csv", "mapped-column-present", "defaulted-field", "json-path-mapping",
        "right-delimiter", "empty", "unrecognised"])
def test_no_hint_when_the_file_is_sound_or_the_cause_unrecognised(tmp_path: Path, data: bytes, source_format: str,
                                                                  reason: str, options: dict) -> None:
    assert hint(tmp_path, data, source_format, reason, **options) is None


def test_only_a_mostly_quarantined_file_is_looked_at() -> None:
    assert [mostly_quarantined(read, quarantined) for read, quarantined in ((0, 0), (10, 4), (10, 5), (1, 1))] == [
        False, False, True, True]


def test_a_named_pipe_is_not_opened_again_for_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    os.mkfifo(path)  # opening it would wait for a writer that never comes
    source = SourceSettings(name="s", format="jsonl", path=str(path))

    assert file_hint(path, source, Counter({"malformed_json": 3})) is None


@pytest.mark.parametrize("data, source_format", [
    (b"alice,2024-01-01T00:00:00Z,message,my SECRET diagnosis\n" * 3, "csv"),  # no header row: a record first
    (b"alice;2024-01-01T00:00:00Z;message;my SECRET diagnosis\n" * 3, "jsonl"),
])
def test_a_hint_describes_a_file_never_quotes_its_records(tmp_path: Path, data: bytes, source_format: str) -> None:
    """A hint is stored (ingest_batches.files) and logged, where forget cannot reach: no record text in it."""
    reason = "missing_user_id" if source_format == "csv" else "malformed_json"
    shown = hint(tmp_path, data, source_format, reason)
    assert shown and "alice" not in shown and "SECRET" not in shown
