"""Personal data taken out of a text on this machine, before it is sent to a language model.

Emails, phone numbers, card-like numbers (13-19 digits that pass the Luhn check) and IBANs become
placeholders (`[email]`, `[phone]`, `[card]`, `[iban]`); other runs of 16 or more digits become `[number]`.
Precision is not the aim: a date written 2024 01 15 may be taken for a phone number, and that costs the
model a date, and a plain 1000000 is taken for one too, where a missed phone number would have left this
machine. Placeholders are what the model sees,
so nothing it returns can hold the real value (an item quoting a placeholder is dropped by the extractor).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

PLACEHOLDERS = ("[email]", "[iban]", "[card]", "[phone]", "[number]")

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# Two capital letters (a country), two check digits, then groups of four capitals or digits (spaced or not),
# and a last shorter group.
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]{4}){2,7}(?:[ \-]?[A-Z0-9]{1,3})?\b")
# Digits with the separators people write numbers with: spaces, dots, dashes, slashes, brackets, a leading +.
_DIGIT_RUN = re.compile(r"(?<![\w+])\+?\(?\d(?:[\d \-./()]*\d)?\)?(?!\w)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[./]\d{1,2}[./]\d{2,4}")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _iban_shaped(match: re.Match) -> bool:
    compact = re.sub(r"[ \-]", "", match.group(0))
    # An IBAN has at least one digit after its check digits (a bank code, an account number).
    return 15 <= len(compact) <= 34 and any(char.isdigit() for char in compact[4:])


@dataclass(frozen=True)
class Redacted:
    text: str
    found: Counter = field(default_factory=Counter)  # placeholder -> how many replaced


def _number_placeholder(run: str) -> str | None:
    """The placeholder for a run of digits, or None to leave it (a year, a quantity, a date, a version)."""
    digits = re.sub(r"\D", "", run)
    if _ISO_DATE.fullmatch(run.strip()):
        return None
    if 13 <= len(digits) <= 19 and luhn_valid(digits):
        return "[card]"
    if len(digits) >= 16:
        return "[number]"
    if len(digits) >= 7:  # 5551234, 030-1234567, +49 30 1234567, (555) 123-4567; also 1000000 (the price of safety)
        return "[phone]"
    return None


def redact_pii(text: str) -> Redacted:
    """`text` with emails, IBANs, card-like numbers and phone numbers replaced by placeholders."""
    found: Counter = Counter()

    def replace(placeholder: str):
        def substitute(match: re.Match) -> str:
            found[placeholder] += 1
            return placeholder
        return substitute

    text = _EMAIL.sub(replace("[email]"), text)

    def iban(match: re.Match) -> str:
        if not _iban_shaped(match):
            return match.group(0)
        found["[iban]"] += 1
        return "[iban]"

    text = _IBAN.sub(iban, text)

    def number(match: re.Match) -> str:
        run = match.group(0)
        placeholder = _number_placeholder(run)
        if placeholder is None:
            return run
        found[placeholder] += 1
        return placeholder

    text = _DIGIT_RUN.sub(number, text)
    return Redacted(text, found)
