"""The small parts of the audit that read input: ``--since``, the card detector of the card scans, and
the cursors of the admin endpoints."""

from __future__ import annotations

import json

import pytest

from bookline.audit.cli import parse_since
from bookline.domain.errors import BooklineError
from bookline.services.common.admin import cursor_values, encode_cursor
from bookline.services.common.data_scan import CardScan, holds_card_number

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", NOW - 900),
        ("2h", NOW - 7200),
        ("1.5d", NOW - 129600),
        ("30 s", NOW - 30),
        ("1767225600", 1767225600.0),
        ("2026-01-01T00:00:00Z", 1767225600.0),
        ("2026-01-01T01:00:00+01:00", 1767225600.0),
        ("2026-01-01", 1767225600.0),  # a naive time is UTC
    ],
)
def test_since_takes_unix_seconds_an_iso_time_or_a_duration_ago(text: str, expected: float) -> None:
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "15 minutes", "-", "2026-13-01"])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError):
        parse_since(text, now=NOW)


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "card 4242 4242 4242 4242 in a sentence",
        "4000-0000-0000-0002",
        json.dumps({"note": "paid with 4000000000009995"}),
        json.dumps({"4242424242424242": "as a key"}),
        json.dumps(["nested", {"deeper": ["378282246310005"]}]),
    ],
)
def test_a_card_number_is_found_in_plain_text_and_in_the_strings_of_json(text: str) -> None:
    assert holds_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "4242424242424241",  # fails the Luhn check
        "auth_c57c0259a70394040169751f",  # digits inside an id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        # numbers in JSON are durations, counts and timestamps: a nanosecond time passes Luhn by chance
        json.dumps({"time_unix_nano": 1712345678901234567, "name": "payment_declined"}),
        "1712345678.123456",
    ],
)
def test_ids_timestamps_and_luhn_invalid_numbers_are_not_cards(text: str | None) -> None:
    assert not holds_card_number(text)


def test_a_card_scan_names_the_place_but_never_the_number_even_in_the_row_key() -> None:
    scan = CardScan()
    scan.row("idempotency_keys", "4242424242424242/authorize", [("key", "4242424242424242"), ("op", "authorize")])
    scan.row("tokens", "tok_1", [("last4", "4242")])

    body = scan.body()

    assert body["hits"] == [{"table": "idempotency_keys", "column": "key", "row_key": "[REDACTED]/authorize"}]
    assert (body["rows_scanned"], body["rows_with_card"], body["truncated"]) == (2, 1, False)
    assert "4242424242424242" not in json.dumps(body)


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    assert cursor_values(encode_cursor(["room-1", "2027-03-05", "rsv_1"]), 3) == ["room-1", "2027-03-05", "rsv_1"]
    for forged in ("not-base64!", encode_cursor(["one"]), "W3sieCI6MX1d"):  # wrong width, an object inside
        with pytest.raises(BooklineError) as caught:
            cursor_values(forged, 3)
        assert caught.value.code == "invalid_cursor"
