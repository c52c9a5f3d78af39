"""A card number sent anywhere (a field, a header, a query string, a token's subject, a queue
message's id), alone or joined to a word (u-4111111111111111), never comes back in a span, a log line,
an error or a database row; and without the redaction step it would have. What a producer left at rest
in the queue, the card scan reports."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest

from bookline.adapters.queue import SqliteQueue
from bookline.auth.customers import LOCAL_ISSUER
from bookline.auth.keys import ISSUER_KEY, KeyDir
from bookline.telemetry import configure_logging
from conftest import start_stack
from support.booking import Client, bk_id, fresh_stay

PAN = "4242424242424242"
SPACED = "4000 0000 0000 0002"
# card numbers joined to a word by a letter, "-" or "_": the forms a user id, a key or a message id takes
GLUED = ("u-4111111111111111", "guest_5105105105105100", "x4000056655665556", "371449635398431-z",
         "378282246310005-confirmed")  # fmt: skip
ADMIN_TOKEN = "redaction-test-admin-token"


def card_digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def customer_token(stack, sub: str) -> str:
    """A token of the stack's local issuer for ``sub``, signed by hand: the issuer mints none for a
    card-like subject, but an identity provider might send one."""
    now = int(time.time())
    claims = {"iss": LOCAL_ISSUER, "aud": "bookline", "sub": sub, "iat": now, "exp": now + 600}
    key = KeyDir(stack.key_dir).load_private(ISSUER_KEY)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": ISSUER_KEY})


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
    for glued in GLUED:
        responses.append(client.book({**body, "property_id": glued}))
        responses.append(client.book({**body, "room_id": glued}))
        responses.append(client.book(body, key=glued))
        as_glued = {"Idempotency-Key": str(uuid.uuid4()), "Authorization": f"Bearer {customer_token(stack, glued)}"}
        responses.append(http.post(f"{client.booking_url}/bookings", json=body, headers=as_glued))
        responses.append(http.get(f"{client.booking_url}/properties/{glued}"))
        responses.append(http.get(f"{client.booking_url}/properties", params={"city": glued}))
        responses.append(client.get(f"/bookings/{glued}"))
        responses.append(http.get(f"{client.booking_url}/bookings", headers={"X-Guest": glued, **client.auth()}))
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
        assert not [g for g in GLUED if card_digits(g) in response.text], (response.request.url, response.text)
    assert PAN not in recorded and digits(SPACED) not in digits(recorded)
    assert not [g for g in GLUED if card_digits(g) in recorded]
    out, err = logs.readouterr()
    assert "a guest typed [REDACTED]" in err
    assert PAN not in out + err
    assert not [g for g in GLUED if card_digits(g) in out + err]
    stored = database_text(tmp_path)
    assert PAN not in stored and not [g for g in GLUED if card_digits(g) in stored]


def test_control_without_the_redaction_step_the_query_string_leaks_into_spans(tmp_path: Path):
    stack = start_stack(tmp_path, unsafe_disable_redaction=True)
    try:
        send_card_numbers_everywhere(stack)
        recorded = everything_recorded(stack)
    finally:
        stack.stop()
    assert PAN in recorded, "redaction is off, yet no card number reached a span: the test cannot see a leak"
    assert [g for g in GLUED if card_digits(g) not in recorded] == [], "a joined card number cannot be seen"


async def publish(stack, message_id: str, body: dict) -> None:
    queue = SqliteQueue(stack.settings.queue_path, visibility_timeout_s=30)
    try:
        await queue.publish("booking.confirmed", body, headers={}, message_id=message_id)
    finally:
        await queue.close()


def test_a_card_like_message_id_reaches_no_span_or_log_and_the_card_scan_finds_it_queued(tmp_path: Path, logs):
    stack = start_stack(tmp_path, admin_token=ADMIN_TOKEN)
    message_id = "378282246310005-confirmed"
    # a producer without Bookline's checks: a card in the message id, in a guest's id and where the
    # reservation id goes (which makes the event one that can never be notified)
    event = {"booking_id": bk_id("glued"), "reservation_id": "u-4111111111111111",
             "user_id": "guest_5105105105105100"}  # fmt: skip
    url = stack.url("notification-service") + "/admin/card-scan"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        published = time.time()
        asyncio.run(publish(stack, message_id, event))
        deadline = time.monotonic() + 20
        while not [s for s in stack.spans() if s.name == "booking.confirmed process"]:
            assert time.monotonic() < deadline, "notification-service did not take the message"
            time.sleep(0.05)
        recorded = everything_recorded(stack)
        scan = httpx.get(url, headers=auth, timeout=30)
        later = httpx.get(url, params={"since": published + 3600}, headers=auth, timeout=30)
    finally:
        stack.stop()
    out, err = logs.readouterr()
    for glued in (message_id, "guest_5105105105105100", "u-4111111111111111"):
        assert card_digits(glued) not in recorded and card_digits(glued) not in out + err, glued
    assert "dropping invalid booking event [REDACTED]" in err
    hits = {(h["table"], h["column"]) for h in scan.json()["hits"]}
    assert {("queue.messages", "message_id"), ("queue.messages", "body")} <= hits
    assert card_digits(message_id) not in scan.text
    assert not [h for h in later.json()["hits"] if h["table"] == "queue.messages"]  # published before --since
