"""printable(): what could act on a terminal is shown as an escape; what is only text is left alone."""

from __future__ import annotations

import pytest

from selfmodel.terminal import printable


@pytest.mark.parametrize("raw, shown", [
    ("\x1b[2J", "\\x1b[2J"),  # clear screen
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # set the window title (OSC ... BEL)
    ("\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\", "\\x1b]8;;http://evil\\x1b\\click\\x1b]8;;\\x1b\\"),
    ("a\rb\x08c\x00d\x7f", "a\\rb\\x08c\\x00d\\x7f"),  # CR, backspace, NUL, DEL
    ("\x9b2J", "\\x9b2J"),  # C1 CSI: a whole escape sequence in one character on 8-bit terminals
    ("\u0085", "\\x85"),  # NEL, a C1 line break
    ("exe.jpg\u202e", "exe.jpg\\u202e"),  # right-to-left override
    ("\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"),
    ("\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"),  # bidi isolates
    ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),  # LRM, RLM, Arabic letter mark
    ("al\u200bice\ufeff", "al\\u200bice\\ufeff"),  # zero-width space, byte-order mark
    ("\U000e0041\U000e0042", "\\U000e0041\\U000e0042"),  # invisible tag characters smuggling "AB"
    ("line\u2028next\u2029", "line\\u2028next\\u2029"),
    ("bad\udcff.jsonl", "bad\\udcff.jsonl"),  # a lone surrogate (undecodable file name) would not even print
    ("one\nline\ttab", "one\\nline\\ttab"),
])
def test_control_and_invisible_characters_are_shown_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown


@pytest.mark.parametrize("text", [
    "plain ascii [red]markup[/red] and C:\\Users\\me",
    "Zürich, 東京, مرحبا, नमस्ते, Ελληνικά",
    "emoji 👍 and a family 👨\u200d👩\u200d👧 joined by ZWJ",
    "ZWNJ in Persian: می\u200cخواهم",
    "no-break\u00a0space and ideographic\u3000space",
    "",
])
def test_text_that_cannot_act_on_a_terminal_is_left_as_it_is(text: str) -> None:
    assert printable(text) == text


def test_multiline_keeps_line_breaks_and_tabs_but_not_carriage_returns() -> None:
    assert printable("a\n\tb\r\n\x1b[2J", multiline=True) == "a\n\tb\\r\n\\x1b[2J"


def test_anything_is_printed_as_its_text() -> None:
    from pathlib import Path

    assert printable(Path("/tmp/wh\x1b[2J/x.duckdb")) == "/tmp/wh\\x1b[2J/x.duckdb"
    assert printable(None) == "None" and printable(3) == "3"
