"""strict_json: what DuckDB's JSON reader accepts beyond the JSON standard is found, and nothing else is."""

from __future__ import annotations

import json
import random

import duckdb
import pyarrow as pa
import pytest

from selfmodel.sources.strict_json import strict_problem, suspect_lines


def duckdb_reads(texts: list[str]) -> list[bool]:
    con = duckdb.connect()
    try:
        lines = pa.table({"text": pa.array(texts, pa.string())})
        return [valid for (valid,) in con.execute("select json_valid(text) from lines").fetchall()]
    finally:
        con.close()


NOT_JSON_BUT_READ_BY_DUCKDB = [
    ('{"a": 1,}', "trailing comma before '}'"),
    ('{"a": [1, 2, ]}', "trailing comma before ']'"),
    ('{"a": 1 ,\t}', "trailing comma before '}'"),
    ('{"user_id": "u1", "rating": NaN}', "NaN is not a JSON value"),
    ('{"rating": nan}', "nan is not a JSON value"),
    ('{"rating": -nan}', "-nan is not a JSON value"),
    ('{"rating": Infinity}', "Infinity is not a JSON value"),
    ('{"rating": -Infinity}', "-Infinity is not a JSON value"),
    ('{"rating": [inf]}', "inf is not a JSON value"),
    ('{"rating": INF}', "INF is not a JSON value"),
    ('{"rating": iNfInItY}', "iNfInItY is not a JSON value"),
    ("NaN", "NaN is not a JSON value"),
]


@pytest.mark.parametrize("text, problem", NOT_JSON_BUT_READ_BY_DUCKDB)
def test_what_duckdb_reads_but_json_does_not_allow_is_flagged_and_named(text: str, problem: str) -> None:
    assert duckdb_reads([text]) == [True]  # else there would be nothing to guard against

    assert suspect_lines(pa.array([text])) == [0]
    assert problem in strict_problem(text)


STANDARD_JSON_THAT_LOOKS_SUSPECT = [
    '{"text": "a list, ]"}',  # the pattern matches inside strings: only a strict parse clears them
    '{"text": "x: NaN, y: Infinity"}',
    '{"text": "[inf"}',
    '{"tags": ["a", "b"], "o": {}}',
    '{"n": ' + "9" * 5000 + ', "text": ",]"}',  # more digits than int() takes; JSON sets no limit
]
PLAIN_JSON = ['{"a": 1, "b": [1, 2], "c": null}', '{"text": "[INFO] information infant nancy"}', '{"n": -1.5e300}']


@pytest.mark.parametrize("text", STANDARD_JSON_THAT_LOOKS_SUSPECT + PLAIN_JSON)
def test_standard_json_has_no_problem(text: str) -> None:
    assert strict_problem(text) is None


def test_the_screen_skips_plain_lines_so_clean_data_costs_no_python_parse() -> None:
    lines = PLAIN_JSON + STANDARD_JSON_THAT_LOOKS_SUSPECT[:1] + [None]

    assert suspect_lines(pa.array(lines, pa.string())) == [len(PLAIN_JSON)]


def test_a_line_nested_too_deeply_for_other_readers_is_not_loaded() -> None:
    assert strict_problem("[" * 5000 + "]" * 5000) == "nested too deeply to read"


def mutations(count: int, seed: int) -> list[str]:
    """JSON texts with a few random edits from an alphabet rich in what parsers disagree on."""
    bases = ['{"event_id": "e1", "user_id": "u1", "text": "hi, [x]", "tags": ["a", "b"], "n": -1.5e3, '
             '"o": {"p": [true, false, null]}}', '[1, "x", null]', '{}', "1"]
    alphabet = list(',:{}[]"\\ntrufalsNIiaAyY0123456789.eE+- \t\r\f\v/*\'x') + [
        "\u00a0", "\ufeff", "nan", "inf", "Infinity", "NaN", "-INF", ",]", ",}", ", ]", "\\u0000", "\\ud800",
        "//", "/*", "0x", "undefined", "True"]
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        chars = list(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(chars) + 1)
            if rng.random() < 0.5 or not chars:
                chars.insert(at, rng.choice(alphabet))
            elif rng.random() < 0.5:
                del chars[min(at, len(chars) - 1)]
            else:
                chars[min(at, len(chars) - 1)] = rng.choice(alphabet)
        texts.append("".join(chars))
    return texts


def test_every_text_duckdb_reads_that_json_rejects_is_caught() -> None:
    # The screen must never miss (a miss is a non-standard line loaded); checked against both parsers
    # on random edits, so a DuckDB upgrade that accepts something new fails here.
    texts = mutations(20_000, seed=7)
    flagged = set(suspect_lines(pa.array(texts)))
    lenient = 0
    for index, (text, read) in enumerate(zip(texts, duckdb_reads(texts))):
        if not read:
            continue
        try:
            json.loads(text, parse_constant=lambda name: 1 / 0)
            continue
        except (ValueError, ZeroDivisionError):
            lenient += 1
        assert index in flagged, text
        assert strict_problem(text) is not None, text
    assert lenient > 50  # the edits did reach what the parsers disagree on
