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
    "missing user_id": (lambda b: _without(b, "user_id"), 422, "validation_error"),
    "missing payment": (lambda b: _without(b, "payment"), 422, "validation_error"),
    "guests not a number": (lambda b: {**b, "guests": "two"}, 422, "validation_error"),
    "unknown source": (lambda b: {**b, "source": "fax"}, 422, "validation_error"),
    "check_in not a date": (lambda b: {**b, "check_in": "next tuesday"}, 422, "validation_error"),
    "check_out before check_in": (
        lambda b: {**b, "check_in": _days(20), "check_out": _days(18)}, 422, "check_out_not_after_check_in"
    ),
    "zero nights": (lambda b: {**b, "check_in": _days(20), "check_out": _days(20)}, 422, "check_out_not_after_check_in"),
    "check_in in the past": (lambda b: {**b, "check_in": _days(-2), "check_out": _days(1)}, 422, "check_in_in_past"),
    "stay over 30 nights": (lambda b: {**b, "check_in": _days(10), "check_out": _days(41)}, 422, "stay_too_long"),
    "no guests": (lambda b: {**b, "guests": 0}, 422, "validation_error"),
    "more guests than any room": (lambda b: {**b, "guests": 9}, 422, "guests_exceed_capacity"),
    "more guests than the room": (
        lambda b: {**b, "guests": 3, "room_id": "prop-00001-r001"}, 422, "guests_exceed_capacity"
    ),
    "unknown property": (lambda b: {**b, "property_id": "prop-99999"}, 404, "property_not_found"),
    "unknown room": (lambda b: {**b, "room_id": "prop-00001-r999"}, 404, "room_not_found"),
    "card_last_four of 3 digits": (
        lambda b: {**b, "payment": {**b["payment"], "card_last_four": "424"}}, 422, "validation_error"
    ),
    "card_last_four with letters": (
        lambda b: {**b, "payment": {**b["payment"], "card_last_four": "42a2"}}, 422, "validation_error"
    ),
    "unknown payment method": (lambda b: {**b, "payment": {**b["payment"], "method": "cash"}}, 422, "validation_error"),
    "an e-mail as user_id": (lambda b: {**b, "user_id": "guest@example.com"}, 422, "validation_error"),
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
        headers={"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4()), **headers},
    )


def test_malformed_json_is_400(stack, client: Client):
    before = table_counts(stack.settings.data_dir)
    response = _raw(client, b'{"user_id": "u1", ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert table_counts(stack.settings.data_dir) == before


def test_body_over_64_kib_is_413(stack, client: Client, valid: dict):
    before = table_counts(stack.settings.data_dir)
    big = dict(valid, user_id="u" * 70_000)
    response = _raw(client, json.dumps(big).encode())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert table_counts(stack.settings.data_dir) == before


def test_missing_idempotency_key_is_400(stack, client: Client, valid: dict):
    before = table_counts(stack.settings.data_dir)
    response = client.http.post(f"{client.booking_url}/bookings", json=valid)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_idempotency_key"
    assert table_counts(stack.settings.data_dir) == before


def test_unknown_booking_is_404(client: Client):
    response = client.get("/bookings/bk_nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "booking_not_found"
