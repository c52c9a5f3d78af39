"""The guest of a booking, through the real services: stored by booking-service and
confirmation-service only, shown to the booking's owner, found by code and e-mail by a guest without
an account (one 404 for any mismatch, rate-limited), refused with a fixed message when malformed, and
never carried by the queue: notification-service asks confirmation-service for the address."""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
import time

import httpx
import pytest

from conftest import start_stack
from support.booking import GUEST, Client, as_service, fresh_stay

LOOKUPS_PER_MINUTE = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = start_stack(tmp_path_factory.mktemp("guests"), rate_limit_lookups_per_address=f"{LOOKUPS_PER_MINUTE}/minute")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def booked(client: Client) -> dict:
    answer = client.book(client.body(stay=fresh_stay()))
    assert answer.status_code == 201, answer.text
    return answer.json()


def rows(path, query: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_owner_sees_the_guest_and_nobody_else_does(client: Client, booked: dict):
    mine = client.get(f"/bookings/{booked['booking_id']}")
    assert mine.status_code == 200
    assert mine.json()["guest"] == GUEST
    theirs = client.get(f"/bookings/{booked['booking_id']}", user="someone-else")
    assert theirs.status_code == 404


def test_a_guest_finds_the_booking_by_code_and_email_whatever_the_case(stack, client: Client, booked: dict):
    found = client.http.post(
        f"{client.booking_url}/bookings/lookup",
        json={"confirmation_code": booked["confirmation_code"], "email": GUEST["email"].upper()},
    )
    assert found.status_code == 200, found.text
    assert found.json()["booking_id"] == booked["booking_id"]
    assert found.json()["guest"]["name"] == GUEST["name"]


def test_any_mismatch_is_the_same_404_and_lookups_are_rate_limited(stack, client: Client, booked: dict):
    url = f"{client.booking_url}/bookings/lookup"
    wrong_email = {"confirmation_code": booked["confirmation_code"], "email": "someone.else@example.com"}
    wrong_code = {"confirmation_code": "BKL-2222-2222", "email": GUEST["email"]}
    answers = [client.http.post(url, json=wrong_email), client.http.post(url, json=wrong_code)]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json()["error"] == answers[1].json()["error"]
    assert answers[0].json()["error"]["code"] == "booking_not_found"
    statuses = [client.http.post(url, json=wrong_code).status_code for _ in range(LOOKUPS_PER_MINUTE + 1)]
    assert statuses[-1] == 429, statuses
    assert client.http.post(url, json={**wrong_email, "email": GUEST["email"]}).status_code == 429


@pytest.mark.parametrize(
    ("guest", "field"),
    [
        ({"name": "Ana Lopez", "email": "not-an-address"}, "guest.email"),
        ({"name": "Ana Lopez", "email": "ana@example.com", "phone": "0912 345 678"}, "guest.phone"),
        ({"name": "Ana Lopez", "email": "ana@example.com", "phone": "+351912345678x"}, "guest.phone"),
        ({"name": "   ", "email": "ana@example.com"}, "guest.name"),
        ({"name": "Ana\x00Lopez", "email": "ana@example.com"}, "guest.name"),
        ({"name": "ana@example.com", "email": "ana@example.com"}, "guest.name"),
        ({"name": "Ana Lopez"}, "guest.email"),
        ({"name": "Ana Lopez", "email": "ana@example.com", "age": 30}, "guest.age"),
    ],
)
def test_a_malformed_guest_is_422_without_repeating_it_and_leaves_nothing(stack, client: Client, guest, field):
    before = rows(stack.settings.data_dir / "booking.db", "SELECT count(*) FROM bookings")
    answer = client.book(client.body(stay=fresh_stay(), guest=guest))
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error" and field in error["message"]
    for value in guest.values():
        if isinstance(value, str) and value.strip():
            assert value not in answer.text
    assert rows(stack.settings.data_dir / "booking.db", "SELECT count(*) FROM bookings") == before


def test_a_booking_needs_a_guest(client: Client):
    body = client.body(stay=fresh_stay())
    del body["guest"]
    answer = client.book(body)
    assert answer.status_code == 422 and "guest" in answer.json()["error"]["message"]


def test_the_queue_carries_ids_only_and_the_email_goes_to_the_guest(stack, client: Client, booked: dict):
    mail = stack.settings.mail_dir / f"{booked['booking_id']}-confirmed.eml"
    wait_for(mail.exists)
    bodies = [json.loads(b) for (b,) in rows(stack.settings.queue_path, "SELECT body FROM messages")]
    assert bodies and all(set(b) == {"booking_id", "reservation_id"} for b in bodies), bodies
    message = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == GUEST["email"]
    assert message["To"].addresses[0].display_name == GUEST["name"]
    text = message.get_body(("plain",)).get_content()
    assert GUEST["name"] in text and booked["confirmation_code"] in text


def test_only_notification_service_reads_the_guest_at_confirmation_service(stack, booked: dict):
    url = f"{stack.url('confirmation-service')}/confirmations/{booked['reservation_id']}"
    as_notification = as_service(stack.key_dir, "notification-service", "confirmation-service")
    as_booking = as_service(stack.key_dir, "booking-service", "confirmation-service")
    assert httpx.get(f"{url}/notice", headers=as_notification).json()["guest"] == {**GUEST}
    assert httpx.get(f"{url}/notice", headers=as_booking).status_code == 403
    assert httpx.get(f"{url}/notice").status_code == 401
    # what booking- and availability-service read of a confirmation holds no personal data
    public = httpx.get(url, headers=as_booking).json()
    assert not {k for k in public if k.startswith("guest") or k == "details"}, public


def test_only_booking_and_confirmation_service_store_the_guest(stack, booked: dict):
    wait_for((stack.settings.mail_dir / f"{booked['booking_id']}-confirmed.eml").exists)
    holders = {
        path.name
        for path in stack.settings.data_dir.glob("*.db")
        for (table,) in rows(path, "SELECT name FROM sqlite_master WHERE type='table'")
        if any(value in repr(row) for row in rows(path, f'SELECT * FROM "{table}"') for value in GUEST.values())
    }
    assert holders == {"booking.db", "confirmation.db"}
