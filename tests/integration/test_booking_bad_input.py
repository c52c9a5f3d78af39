"""Bad input to POST /bookings: a clear 4xx with a stable code, and nothing written anywhere."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from support.booking import Client, fresh_stay, table_counts


@pytest.fixture(scope="module")
def valid(client: Client) -> dict:
    return client.body(stay=fresh_stay())


def _without(body: dict, field: str) -> dict:
    return {k: v for k, v in body.items() if k != field}


def _days(n: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=n)).isoformat()


CASES = {
    "a user_id in the body (the customer is the token's sub)": (
        lambda b: {**b, "user_id": "someone-else"},
        422,
        "validation_error",
    ),
    "guests true": (lambda b: {**b, "guests": True}, 422, "validation_error"),
    "guests as a string": (lambda b: {**b, "guests": "2"}, 422, "validation_error"),
    "guests as a float": (lambda b: {**b, "guests": 2.0}, 422, "validation_error"),
    "check_in a datetime": (lambda b: {**b, "check_in": b["check_in"] + "T00:00:00"}, 422, "validation_error"),
    "check_in more than two years ahead": (
        lambda b: {**b, "check_in": _days(800), "check_out": _days(802)},
        422,
        "check_in_too_far",
    ),
    "check_in in year 9999": (
        lambda b: {**b, "check_in": "9999-01-01", "check_out": "9999-01-03"},
        422,
        "check_in_too_far",
    ),
    "a card number glued to the property id": (
        lambda b: {**b, "property_id": "prop-4111111111111111"},
        422,
        "validation_error",
    ),
    "a card number glued to the room id": (lambda b: {**b, "room_id": "r_4111111111111111"}, 422, "validation_error"),
    "a card token of another format": (
        lambda b: {**b, "payment": {**b["payment"], "token": "tok_4111111111111111"}},
        422,
        "validation_error",
    ),
    "missing payment": (lambda b: _without(b, "payment"), 422, "validation_error"),
    "guests not a number": (lambda b: {**b, "guests": "two"}, 422, "validation_error"),
    "unknown source": (lambda b: {**b, "source": "fax"}, 422, "validation_error"),
    "check_in not a date": (lambda b: {**b, "check_in": "next tuesday"}, 422, "validation_error"),
    "check_out before check_in": (
        lambda b: {**b, "check_in": _days(20), "check_out": _days(18)},
        422,
        "check_out_not_after_check_in",
    ),
    "zero nights": (
        lambda b: {**b, "check_in": _days(20), "check_out": _days(20)},
        422,
        "check_out_not_after_check_in",
    ),
    "check_in in the past": (lambda b: {**b, "check_in": _days(-2), "check_out": _days(1)}, 422, "check_in_in_past"),
    "stay over 30 nights": (lambda b: {**b, "check_in": _days(10), "check_out": _days(41)}, 422, "stay_too_long"),
    "no guests": (lambda b: {**b, "guests": 0}, 422, "validation_error"),
    "more guests than any room": (lambda b: {**b, "guests": 9}, 422, "guests_exceed_capacity"),
    "more guests than the room": (
        lambda b: {**b, "guests": 3, "room_id": "prop-00001-r001"},
        422,
        "guests_exceed_capacity",
    ),
    "unknown property": (lambda b: {**b, "property_id": "prop-99999"}, 404, "property_not_found"),
    "unknown room": (lambda b: {**b, "room_id": "prop-00001-r999"}, 404, "room_not_found"),
    "card_last_four of 3 digits": (
        lambda b: {**b, "payment": {**b["payment"], "card_last_four": "424"}},
        422,
        "validation_error",
    ),
    "card_last_four with letters": (
        lambda b: {**b, "payment": {**b["payment"], "card_last_four": "42a2"}},
        422,
        "validation_error",
    ),
    "unknown payment method": (lambda b: {**b, "payment": {**b["payment"], "method": "cash"}}, 422, "validation_error"),
    "an extra field": (lambda b: {**b, "card_number": "4242424242424242"}, 422, "validation_error"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_booking_input_is_refused_with_its_code_and_writes_nothing(stack, client: Client, valid: dict, case: str):
    mutate, status, code = CASES[case]
    before = table_counts(stack.settings.data_dir)
    response = client.book(mutate(dict(valid)))
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["trace_id"]
    assert "4242424242424242" not in response.text
    after = table_counts(stack.settings.data_dir)
    assert after == before


def _raw(client: Client, content: bytes, **headers: str):
    return client.http.post(
        f"{client.booking_url}/bookings",
        content=content,
        headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4()), **client.auth(), **headers},
    )


def test_malformed_json_is_400(stack, client: Client):
    before = table_counts(stack.settings.data_dir)
    response = _raw(client, b'{"source": "web", ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert table_counts(stack.settings.data_dir) == before


def test_body_over_64_kib_is_413(stack, client: Client, valid: dict):
    before = table_counts(stack.settings.data_dir)
    big = dict(valid, note="u" * 70_000)
    response = _raw(client, json.dumps(big).encode())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert table_counts(stack.settings.data_dir) == before


def test_missing_idempotency_key_is_400(stack, client: Client, valid: dict):
    before = table_counts(stack.settings.data_dir)
    response = client.http.post(f"{client.booking_url}/bookings", json=valid, headers=client.auth())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_idempotency_key"
    assert table_counts(stack.settings.data_dir) == before


def test_unknown_booking_is_404(client: Client):
    response = client.get("/bookings/bk_" + "a" * 24)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "booking_not_found"


@pytest.mark.parametrize("booking_id", ["bk_nope", "4242424242424242", "bk_4242424242424242abcdef01", "BK_" + "0" * 24])
def test_a_booking_id_out_of_its_format_is_422(client: Client, booking_id: str):
    response = client.get(f"/bookings/{booking_id}")
    assert response.status_code == 422, response.text
    assert "4242424242424242" not in response.text


def test_a_body_that_is_not_utf8_json_is_400_malformed_json(client: Client):
    response = _raw(client, b"\xff\xfe{")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_form_body_is_400_malformed_json(client: Client):
    response = _raw(client, b"source=web", **{"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] in ("malformed_json", "validation_error")


@pytest.mark.parametrize("key", ["4242424242424242", "retry-u-4111111111111111"])
def test_an_idempotency_key_holding_a_card_number_is_422_and_writes_nothing(stack, client: Client, valid: dict, key):
    before = table_counts(stack.settings.data_dir)
    response = client.book(valid, key=key)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert "4242424242424242" not in response.text and "4111111111111111" not in response.text
    assert table_counts(stack.settings.data_dir) == before
