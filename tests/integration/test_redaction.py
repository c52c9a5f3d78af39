"""A card number sent anywhere (a field, a header, a query string) never comes back in a span, a
log line, an error or a database row; and without the redaction step it would have."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import httpx
import pytest

from bookline.telemetry import configure_logging
from conftest import start_stack
from support.booking import Client, fresh_stay

PAN = "4242424242424242"
SPACED = "4000 0000 0000 0002"


def send_card_numbers_everywhere(stack) -> list[httpx.Response]:
    client = Client.for_stack(stack)
    body = client.body(stay=fresh_stay())
    responses = []
    for field in ("user_id", "property_id", "room_id"):
        responses.append(client.book({**body, field: PAN}))
    responses.append(client.book({**body, "payment": {**body["payment"], "token": PAN}}))
    responses.append(client.book({**body, "payment": {**body["payment"], "card_last_four": SPACED}}))
    responses.append(client.book({**body, "card_number": PAN, "cvc": "123"}))
    responses.append(client.book(body, key=PAN))  # a card number as the Idempotency-Key
    http = client.http
    responses.append(
        http.get(
            f"{client.booking_url}/availability",
            params={"property_id": PAN, "check_in": body["check_in"], "check_out": body["check_out"], "guests": 1},
        )
    )
    responses.append(http.get(f"{client.booking_url}/properties/{PAN}"))
    responses.append(http.get(f"{client.booking_url}/properties", params={"city": PAN, "number": PAN}))
    responses.append(http.get(f"{client.booking_url}/bookings/{PAN}", headers={"X-Card": PAN}))
    responses.append(http.post(f"{client.booking_url}/bookings/{PAN}/cancel"))
    return responses


def everything_recorded(stack) -> str:
    texts = []
    for span in stack.spans():
        texts.append(span.name)
        texts.append(json.dumps(dict(span.attributes), default=str))
        texts.append(span.status.description or "")
        for event in span.events:
            texts.append(event.name + json.dumps(dict(event.attributes), default=str))
    return "\n".join(texts)


def database_text(data_dir: Path) -> str:
    rows = []
    for db in data_dir.glob("*.db"):
        if db.name == "gateway.db":
            continue  # the gateway stand-in is the processor: it may see numbers (it stores none anyway)
        conn = sqlite3.connect(db)
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            rows.extend(repr(r) for r in conn.execute(f'SELECT * FROM "{table}"'))
        conn.close()
    return "\n".join(rows)


def digits(text: str) -> str:
    return text.replace(" ", "")


@pytest.fixture
def logs(capfd):
    configure_logging("test", None)
    yield capfd
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)


def test_card_numbers_never_reach_spans_logs_errors_or_rows(tmp_path: Path, logs):
    stack = start_stack(tmp_path)
    try:
        responses = send_card_numbers_everywhere(stack)
        logging.getLogger("bookline.test").warning("a guest typed %s into the user field", PAN)
        recorded = everything_recorded(stack)
    finally:
        stack.stop()
    assert all(r.status_code < 500 for r in responses), [(r.request.url, r.status_code) for r in responses]
    for response in responses:
        assert PAN not in response.text and digits(SPACED) not in digits(response.text)
    assert PAN not in recorded and digits(SPACED) not in digits(recorded)
    out, err = logs.readouterr()
    assert "a guest typed [REDACTED]" in err
    assert PAN not in out + err
    assert PAN not in database_text(tmp_path)


def test_control_without_the_redaction_step_the_query_string_leaks_into_spans(tmp_path: Path):
    stack = start_stack(tmp_path, unsafe_disable_redaction=True)
    try:
        send_card_numbers_everywhere(stack)
        recorded = everything_recorded(stack)
    finally:
        stack.stop()
    assert PAN in recorded, "redaction is off, yet no card number reached a span: the test cannot see a leak"
