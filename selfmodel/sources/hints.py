"""Why a file's records were (nearly) all quarantined, when a look at its first bytes can tell.

A file in the wrong encoding or shape fails every record for the same reason: a UTF-16 file is all
`nul_byte`, a semicolon-separated CSV read with "," is all `missing_user_id`. Each record's reason is
right, but the cause is the file's, so ingest names it once per file (BatchReport.files[].hint), with
what to change. Only cheap checks of the first SAMPLE_BYTES, and only for files mostly quarantined.
"""

from __future__ import annotations

import csv
import json
import stat
from collections import Counter
from pathlib import Path

from selfmodel.settings import SourceSettings
from selfmodel.sources.base import DECOMPRESSION_ERRORS, READABLE_COMPRESSIONS, compression_of, open_decompressed

SAMPLE_BYTES = 64 << 10
# Byte-order marks, longest first (UTF-32 LE starts like UTF-16 LE), with their iconv names.
BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32LE"),
    (b"\x00\x00\xfe\xff", "UTF-32BE"),
    (b"\xff\xfe", "UTF-16LE"),
    (b"\xfe\xff", "UTF-16BE"),
)
DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "pipes"}
REQUIRED_FIELDS = ("user_id", "occurred_at", "kind")


def mostly_quarantined(rows_read: int, quarantined: int) -> bool:
    return rows_read > 0 and quarantined * 2 >= rows_read


def file_hint(path: Path, source: SourceSettings, reasons: Counter) -> str | None:
    """The likely cause of a file's quarantined records and the fix, or None when no check recognises it.

    `reasons` counts the file's quarantine reasons in the batch.
    """
    sample = read_sample(path)
    if not sample:
        return None
    hint = encoding_hint(sample, reasons)
    if hint is None and source.format == "csv":
        hint = csv_hint(sample, source)
    elif hint is None and source.format == "jsonl":
        hint = jsonl_hint(sample, source, reasons)
    return hint


def read_sample(path: Path) -> bytes | None:
    """The first SAMPLE_BYTES of the file's text (decompressed), or None when it cannot be read."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None  # a named pipe: what it held was read, and opening it again would wait for a writer
        compression = compression_of(path)
        if compression is not None and compression not in READABLE_COMPRESSIONS:
            return None
        with open(path, "rb") as raw, open_decompressed(raw, compression) as handle:
            return handle.read(SAMPLE_BYTES)
    except DECOMPRESSION_ERRORS:  # OSError included: a file gone since it was read gets no hint
        return None


def _utf16_or_32(sample: bytes) -> str | None:
    """The UTF-16/32 flavour of text without a byte-order mark, from where its NUL bytes fall."""
    head = sample[:4096]
    if len(head) < 16 or head.count(0) < len(head) // 4:
        return None
    nul_share = [head[lane::4].count(0) / len(head[lane::4]) for lane in range(4)]
    zero = [share > 0.7 for share in nul_share]
    if zero == [False, True, True, True]:
        return "UTF-32LE"
    if zero == [True, True, True, False]:
        return "UTF-32BE"
    if zero == [False, True, False, True]:
        return "UTF-16LE"
    if zero == [True, False, True, False]:
        return "UTF-16BE"
    return None


def encoding_hint(sample: bytes, reasons: Counter) -> str | None:
    for bom, name in BOMS:
        if sample.startswith(bom):
            found = f"{name} text (byte-order mark {bom.hex(' ').upper()})"
            break
    else:
        name = _utf16_or_32(sample)
        found = f"{name} text (a NUL byte beside every character)" if name else None
    if found is not None:
        return f"the file is {found}, but sources must be UTF-8: convert it, e.g. iconv -f {name} -t UTF-8"
    if reasons and reasons.most_common(1)[0][0] == "invalid_utf8":
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(sample) - 4:  # not just a character cut at the end of the sample
                return ("the file is not UTF-8 (its bytes look like a one-byte encoding such as Windows-1252 or "
                        "Latin-1): convert it, e.g. iconv -f WINDOWS-1252 -t UTF-8")
    return None


def _first_line(sample: bytes) -> str:
    return sample.split(b"\n", 1)[0].decode("utf-8", "replace").removeprefix("\ufeff").rstrip("\r")


def csv_hint(sample: bytes, source: SourceSettings) -> str | None:
    header = _first_line(sample)
    if header.lstrip().startswith("{"):
        return "the file looks like JSON Lines (its first line starts with '{'), not CSV: use format: jsonl"
    delimiter = source.csv_delimiter
    if delimiter in header:
        # The names are not shown: without a header row, the first line is a record (whose values are data).
        return missing_field_hint(next(csv.reader([header], delimiter=delimiter), []), source, show_names=False)
    counts = {char: header.count(char) for char in DELIMITER_NAMES if char != delimiter}
    likely = max(counts, key=counts.get)
    if counts[likely] == 0:
        return None
    written = json.dumps(likely)  # "\t" for a tab, as YAML reads it back
    return (f"the header has no {DELIMITER_NAMES.get(delimiter, repr(delimiter))} but {counts[likely]} "
            f"{DELIMITER_NAMES[likely]}: set csv_delimiter: {written} for this source")


def jsonl_hint(sample: bytes, source: SourceSettings, reasons: Counter) -> str | None:
    text = sample.decode("utf-8", "replace").removeprefix("\ufeff").lstrip()
    first = text.split("\n", 1)[0].strip()
    if text.startswith("["):
        return ("the file is one JSON array, not JSON Lines (one object per line): convert it, "
                "e.g. jq -c '.[]' FILE > FILE.jsonl")
    if text.startswith("{") and not _is_json(first):
        return ("the file holds JSON objects spread over several lines (pretty-printed); JSON Lines needs one "
                "object per line: convert it, e.g. jq -c . FILE > FILE.jsonl")
    if not text.startswith("{") and any(char in first for char in DELIMITER_NAMES):
        # Its shape, never its text: a hint is stored and logged, and the line is someone's record.
        likely = max(DELIMITER_NAMES, key=first.count)
        return (f"the file looks like CSV (its first line is not a JSON object and holds {first.count(likely)} "
                f"{DELIMITER_NAMES[likely]}), not JSON Lines: use format: csv")
    chat = chat_records_hint(text)
    if chat is not None:
        return chat
    if reasons and reasons.most_common(1)[0][0].startswith("missing_"):
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                return missing_field_hint(list(record), source)
    return None


# Where chat logs keep a conversation's messages: OpenAI's chat format, and ShareGPT's.
CHAT_ARRAYS = ("messages", "conversations")


def chat_records_hint(text: str) -> str | None:
    """When the first JSON object is a conversation (a messages array of objects with a role), say format chat."""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            return None
        for key in CHAT_ARRAYS:
            messages = record.get(key)
            if (isinstance(messages, list) and messages and isinstance(messages[0], dict)
                    and ("role" in messages[0] or "from" in messages[0])):
                where = "" if key == "messages" else f" and chat: {{messages: {key}, role: from, content: value}}"
                return (f"the records are conversations (a {key!r} array of messages), not one event each: "
                        f"use format: chat{where}")
        return None
    return None


def missing_field_hint(fields: list[str], source: SourceSettings, show_names: bool = True) -> str | None:
    """When a required field is found under no name the source maps, say so (with the names the records use
    when they are a record's keys, not possibly its values)."""
    for canonical in REQUIRED_FIELDS:
        column = source.mapping.get(canonical, canonical)
        if column.startswith("$") or column in fields or canonical in source.defaults:
            continue
        if show_names:
            names = ", ".join(repr(name) for name in fields[:12]) + (", ..." if len(fields) > 12 else "")
            shown = f"their fields: {names}"
        else:
            shown = f"the header names {len(fields)} columns"
        mapped = f" (mapping.{canonical})" if column != canonical else ""
        return (f"the records have no field {column!r}{mapped} ({shown}): map {canonical} to the field "
                f"that holds it, e.g. mapping: {{{canonical}: <field>}}")
    return None


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
