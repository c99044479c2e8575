"""Strict JSON for JSON Lines: what DuckDB's JSON reader accepts beyond the JSON standard is malformed here.

DuckDB's JSON functions (yyjson) accept trailing commas (`{"a": 1,}`, `[1, 2, ]`) and the non-numbers
NaN, Infinity and inf in any letter case, optionally negative (`-nan`, `-Infinity`). Python's json module,
most other readers and RFC 8259 reject them, so a log holding them would be read differently by whoever
reads it next: such a line is quarantined as `malformed_json` instead of loaded as DuckDB understood it.

Cost: one RE2 pass (Arrow, in C) over a block's lines finds every line that *could* use such a construct.
The pattern is a superset (a string value holding `, ]` or `: NaN` matches too), never a subset; only the
lines it flags are parsed strictly in Python, so clean data pays one regex scan and no Python per line.
Duplicate keys are not decided here: normalize_records.sql finds them for every format (`duplicate_key`).
"""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.compute as pc

# Every construct yyjson accepts that RFC 8259 does not (checked by fuzzing both parsers against each
# other, tests/selfmodel/sources/test_strict_json.py), with the whitespace JSON allows (a line holds no
# newline): a comma before a closing bracket, or a non-number where a value starts (the start of the line,
# after ':', '[' or ','). yyjson accepts only '-' as a sign there, but '+' costs nothing to include.
SUSPECT_PATTERN = (
    r",[ \t\r\n]*[}\]]"
    r"|(?:^|[:\[,])[ \t\r\n]*[-+]?(?i:nan|inf(?:inity)?)(?:[^0-9A-Za-z_]|$)"
)
# The same non-numbers, to name the one a strict parse stopped at.
_NON_NUMBER = re.compile(r"[-+]?(?:nan|inf(?:inity)?)(?![0-9A-Za-z_])", re.IGNORECASE)
_JSON_WHITESPACE = " \t\r\n"


class _NonNumber(ValueError):
    """json.loads met NaN, Infinity or -Infinity (which it would otherwise turn into floats)."""


def _reject_constant(name: str) -> float:
    raise _NonNumber(name)


def suspect_lines(texts: pa.Array) -> list[int]:
    """Indexes of the lines that may hold a trailing comma or a non-number (a superset; see module doc)."""
    flagged = pc.match_substring_regex(texts, SUSPECT_PATTERN)
    return pc.indices_nonzero(pc.fill_null(flagged, False)).to_pylist()


def strict_problem(text: str) -> str | None:
    """Why `text` is not standard JSON, or None when it is."""
    try:
        # Numbers stay text: only the syntax matters, and int() refuses over 4300 digits, which JSON allows.
        json.loads(text, parse_constant=_reject_constant, parse_int=str, parse_float=str)
    except _NonNumber as exc:
        return f"{exc} is not a JSON value"
    except json.JSONDecodeError as exc:
        return _describe(text, exc)
    except RecursionError:
        return "nested too deeply to read"
    return None


def _describe(text: str, exc: json.JSONDecodeError) -> str:
    position = exc.pos
    non_number = _NON_NUMBER.match(text, position)
    if non_number:
        return f"{non_number.group()} is not a JSON value (at character {position + 1})"
    if position < len(text) and text[position] in "}]":
        before = text[:position].rstrip(_JSON_WHITESPACE)
        if before.endswith(","):
            return f"trailing comma before {text[position]!r} (at character {len(before)})"
    return f"{exc.msg} (at character {position + 1})"
