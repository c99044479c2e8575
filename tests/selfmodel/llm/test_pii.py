"""PII is taken out on this machine: what must be replaced, and what must be left alone."""

import pytest

from selfmodel.llm.pii import luhn_valid, redact_pii


@pytest.mark.parametrize("text, expected", [
    ("write to ana.b+work@example.co.uk today", "write to [email] today"),
    ("call +49 30 1234567", "call [phone]"),
    ("call (555) 123-4567 or 030-1234567", "call [phone] or [phone]"),
    ("my number is 5551234", "my number is [phone]"),
    ("card 4111 1111 1111 1111 please", "card [card] please"),
    ("card 4111-1111-1111-1111", "card [card]"),
    ("4111111111111112 is not a card", "[number] is not a card"),  # fails Luhn: a long number all the same
    ("pay to DE89 3704 0044 0532 0130 00 now", "pay to [iban] now"),
    ("pay to GB29NWBK60161331926819", "pay to [iban]"),
])
def test_personal_data_is_replaced_by_a_placeholder(text: str, expected: str) -> None:
    assert redact_pii(text).text == expected


@pytest.mark.parametrize("text", [
    "i am 34 and have 3 kids",
    "i was born in 1985",
    "openai 3.54.0 on python 3.11",
    "released on 2024-01-15, or 15.01.2024",
    "a 12 qubit circuit with depth 400",
    "I mostly use dbt and DuckDB",
    "HTTP2 and UTF8 and ISO8601",
])
def test_ordinary_text_and_small_numbers_are_left_alone(text: str) -> None:
    assert redact_pii(text).text == text


def test_what_was_found_is_counted() -> None:
    found = redact_pii("a@b.org, c@d.org, 4111 1111 1111 1111").found
    assert found == {"[email]": 2, "[card]": 1}


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("79927398710")
