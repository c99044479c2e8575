"""Text that came from data, made safe to print on a terminal.

Events, tags, user ids, file names and error messages are written by whoever sent the data. Printed raw,
an escape sequence acts on the reader's terminal instead of being read (`ESC [2J` clears the screen,
`ESC ]0;...BEL` retitles the window, `ESC ]8;;url` hides a link behind text) and a bidi control reorders
what follows it (`invoice`, U+202E, `gpj.exe` displays as `invoiceexe.jpg`). `printable` shows each such
character as a visible escape, `\\x1b` or `\\u202e`, so the reader sees that something was there and
what; it never drops one silently. Everything else, other scripts and emoji included, is left as it is.

Escaped: C0 and C1 control characters and DEL (a line break and a tab too, unless the text may span
lines), format characters (category Cf: bidi controls, zero-width spaces, the byte-order mark, the
invisible tag characters that can smuggle text), lone surrogates (an undecodable file name; printing one
would raise) and the line and paragraph separators U+2028 / U+2029. Kept: ZWJ and ZWNJ (U+200D,
U+200C), which join emoji sequences and letters in Arabic and Indic scripts. A backslash already in the
text is not doubled, for readable Windows paths and regexes: a literal `\\x1b` and an escaped ESC look
the same, and neither acts on the terminal.
"""

from __future__ import annotations

import logging
import unicodedata

_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")
_LINE_BREAKS = frozenset("\n\t")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}  # as Python and C write them


def printable(value: object, *, multiline: bool = False) -> str:
    """`value` as text that prints as itself: each control or invisible format character as an escape.

    `multiline` keeps line breaks and tabs (an error message, an enriched query); a one-line field (a key,
    a value, a file name, an event's text in a listing) shows them as `\\n` and `\\t` too.
    """
    text = str(value)
    if text.isprintable():  # the common case, checked in C: no control, format or separator character
        return text
    return "".join(_escaped(char) if _must_escape(char, multiline) else char for char in text)


def _must_escape(char: str, multiline: bool) -> bool:
    if multiline and char in _LINE_BREAKS:
        return False
    return unicodedata.category(char) in _ESCAPED_CATEGORIES and char not in _JOINERS


def _escaped(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class PrintableFormatter(logging.Formatter):
    """Formats a log record as `inner` does, then as `printable` text: log lines quote data too (a failed
    batch names its files). Line breaks stay, so a traceback still reads as one."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return printable(self.inner.format(record), multiline=True)
