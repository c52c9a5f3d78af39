"""Internal endpoints take only the service that needs them, and their state machines refuse what makes
no sense whoever calls.

The attack of the issue: a committed hold restored behind the booking's back frees its nights, and a
second guest books the same room-night. It fails twice over: without booking-service's credential
(401), and even with it while the booking stands (409 ``hold_committed``). The control test turns
both guards off and shows the double booking it would have been.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bookline.auth.services import ServiceCredentials
from bookline.config import Settings
from bookline.domain.ids import new_reservation_id
from conftest import start_stack
from support.booking import Client, as_service, fresh_stay

RSV = "rsv_" + "a" * 24
AUTH = "auth_" + "a" * 24
# (service, method, path, json): every internal endpoint, and who may call it
INTERNAL = [
    ("availability-service", "GET", "/properties", None, "booking-service"),
    ("availability-service", "GET", "/properties/prop-00001", None, "booking-service notification-service"),
    ("availability-service", "POST", "/holds", {}, "booking-service"),
    ("availability-service", "GET", f"/holds/{RSV}", None, "booking-service"),
    ("availability-service", "POST", f"/holds/{RSV}/commit", None, "confirmation-service"),
    ("availability-service", "POST", f"/holds/{RSV}/release", None, "booking-service"),
    ("availability-service", "POST", f"/holds/{RSV}/restore", None, "booking-service"),
    ("pricing-engine", "POST", "/prices", {}, "booking-service"),
    ("pricing-engine", "POST", "/quotes", {}, "booking-service"),
    ("pricing-engine", "POST", "/quotes/q_aaaaaaaaaaaaaaaaaaaaaaaa/honour", {}, "booking-service"),
    ("confirmation-service", "POST", "/confirmations", {}, "booking-service"),
    ("confirmation-service", "GET", f"/confirmations/{RSV}", None, "booking-service"),
    ("confirmation-service", "POST", f"/confirmations/{RSV}/cancel", None, "booking-service"),
    ("confirmation-service", "GET", f"/confirmations/{RSV}/notice", None, "notification-service"),
    ("payment-gateway", "POST", "/v1/authorizations", {}, "booking-service"),
    ("payment-gateway", "POST", f"/v1/authorizations/{AUTH}/capture", None, "booking-service"),
    ("payment-gateway", "POST", f"/v1/authorizations/{AUTH}/void", None, "booking-service"),
    ("payment-gateway", "POST", f"/v1/authorizations/{AUTH}/refund", None, "booking-service"),
    ("payment-gateway", "GET", f"/v1/authorizations/{AUTH}", None, "booking-service"),
    ("payment-gateway", "GET", f"/v1/ledger?reservation_id={RSV}", None, "booking-service"),
]
IDS = [f"{s} {m} {p.split('?')[0]}" for s, m, p, _, _ in INTERNAL]


def call(stack, service: str, method: str, path: str, body: object, headers: dict | None = None) -> httpx.Response:
    return httpx.request(method, stack.url(service) + path, json=body, headers=headers or {}, timeout=10)


@pytest.mark.parametrize(("service", "method", "path", "body", "caller"), INTERNAL, ids=IDS)
def test_an_internal_endpoint_without_a_service_credential_answers_401(stack, service, method, path, body, caller):
    response = call(stack, service, method, path, body)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "missing_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("service", "method", "path", "body", "caller"), INTERNAL, ids=IDS)
def test_an_internal_endpoint_refuses_a_service_that_does_not_need_it(stack, service, method, path, body, caller):
    # pricing-engine calls no other service; notification-service reads what its e-mails need
    intruder = "pricing-engine" if "notification-service" in caller else "notification-service"
    response = call(stack, service, method, path, body, as_service(stack.key_dir, intruder, service))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "service_forbidden"


def test_a_forged_expired_or_misaddressed_service_token_answers_401(stack):
    url = stack.url("payment-gateway") + f"/v1/ledger?reservation_id={RSV}"
    stranger = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {"iss": "booking-service", "sub": "booking-service", "aud": "payment-gateway", "iat": now, "exp": now + 60}
    forged = jwt.encode(claims, stranger, algorithm="ES256")
    own = ServiceCredentials.of("booking-service", Settings(keys_dir=stack.key_dir))
    misaddressed = own.token_for("pricing-engine")  # a token for another service, replayed here
    expired = jwt.encode({**claims, "exp": now - 60}, own._key, algorithm="ES256")
    for name, token in {"forged": forged, "misaddressed": misaddressed, "expired": expired}.items():
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 401, f"{name}: {response.text}"
        assert response.json()["error"]["code"] == "invalid_service_token", name
    assert httpx.get(url, headers=own.headers_for("payment-gateway"), timeout=10).status_code == 200


def _hold(stack, **fields: object) -> httpx.Response:
    check_in, check_out = fresh_stay()
    body = {
        "reservation_id": new_reservation_id(), "property_id": "prop-00002", "room_id": "prop-00002-r001",
        "check_in": check_in.isoformat(), "check_out": check_out.isoformat(), "ttl_seconds": 60, **fields,
    }  # fmt: skip
    return call(stack, "availability-service", "POST", "/holds", body,
                as_service(stack.key_dir, "booking-service", "availability-service"))  # fmt: skip


def _day(offset: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


HOLD_RULES = {
    "1,095 nights": ({"check_in": _day(10), "check_out": _day(1105)}, "stay_too_long"),
    "a stay in 2001": ({"check_in": "2001-01-01", "check_out": "2001-01-03"}, "check_in_in_past"),
    "more than two years ahead": ({"check_in": _day(900), "check_out": _day(902)}, "check_in_too_far"),
    "a TTL of 5e-324": ({"ttl_seconds": 5e-324}, "validation_error"),
    "a TTL of a week": ({"ttl_seconds": 7 * 86400}, "validation_error"),
    "a card number as reservation id": ({"reservation_id": "4242424242424242"}, "validation_error"),
    "a card number in the room id": ({"room_id": "r-4111111111111111"}, "validation_error"),
    "a datetime for a date": ({"check_in": _day(10) + "T00:00:00"}, "validation_error"),
}


@pytest.mark.parametrize("case", sorted(HOLD_RULES))
def test_a_hold_has_the_stay_rules_of_a_booking(stack, case: str):
    fields, code = HOLD_RULES[case]
    response = _hold(stack, **fields)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert "4111111111111111" not in response.text and "4242424242424242" not in response.text


def test_a_card_number_as_an_id_is_refused_at_every_service(stack):
    booking = as_service(stack.key_dir, "booking-service", "payment-gateway")
    for service, path in [
        ("availability-service", "/holds/4242424242424242"),
        ("confirmation-service", "/confirmations/4242424242424242"),
        ("payment-gateway", "/v1/authorizations/4242424242424242"),
        ("payment-gateway", "/v1/ledger?reservation_id=4242424242424242"),
    ]:
        headers = as_service(stack.key_dir, "booking-service", service) if service != "payment-gateway" else booking
        response = call(stack, service, "GET", path, None, headers)
        assert response.status_code == 422, f"{service}{path}: {response.text}"
        assert "4242424242424242" not in response.text


def restore_attack(stack, client: Client, *, with_key: bool) -> tuple[dict, httpx.Response, httpx.Response]:
    """Book a room-night, restore its committed hold behind the booking's back, book it again."""
    stay = fresh_stay(1)
    body = {"stay": stay, "property_id": "prop-00003", "room_id": "prop-00003-r003", "guests": 1}
    first = client.book(client.body(**body), user="first-guest").json()
    headers = as_service(stack.key_dir, "booking-service", "availability-service") if with_key else {}
    restored = call(stack, "availability-service", "POST", f"/holds/{first['reservation_id']}/restore", None, headers)
    second = client.book(client.body(**body), user="second-guest")
    return first, restored, second


def confirmed_in_booking_db(data_dir: Path, room_id: str) -> int:
    with sqlite3.connect(data_dir / "booking.db") as conn:
        return conn.execute(
            "SELECT count(*) FROM bookings WHERE room_id = ? AND status = 'confirmed'", (room_id,)
        ).fetchone()[0]


def test_restoring_a_confirmed_bookings_nights_fails_without_the_key_and_with_it(stack, client: Client):
    first, anonymous, second = restore_attack(stack, client, with_key=False)
    assert anonymous.status_code == 401
    assert second.status_code == 409

    first, insider, second = restore_attack(stack, client, with_key=True)
    assert insider.status_code == 409, insider.text
    assert insider.json()["error"]["code"] == "hold_committed"
    assert second.status_code == 409
    # the booking's own cancellation still gives the nights back
    assert client.cancel(first["booking_id"], user="first-guest").json()["status"] == "cancelled"


def test_control_without_service_credentials_and_hold_checks_the_attack_double_books(tmp_path: Path):
    stack = start_stack(tmp_path, unsafe_disable_service_auth=True, unsafe_disable_hold_state_checks=True)
    try:
        client = Client.for_stack(stack)
        first, restored, second = restore_attack(stack, client, with_key=False)
        assert restored.status_code == 200, restored.text
        assert second.status_code == 201, "the guards are off, yet no double booking: the test cannot see one"
        assert confirmed_in_booking_db(stack.settings.data_dir, "prop-00003-r003") == 2
    finally:
        stack.stop()


def test_a_gateway_authorization_with_no_booking_behind_it_needs_booking_services_key(stack):
    token = httpx.post(
        stack.url("payment-gateway") + "/v1/tokens",
        json={"number": "4242424242424242", "exp_month": 12, "exp_year": datetime.now(UTC).year + 2, "cvc": "123"},
    ).json()["token"]
    body = {"token": token, "amount_minor": 100, "currency": "EUR", "reservation_id": new_reservation_id()}
    key = {"Idempotency-Key": f"auth-{body['reservation_id']}"}
    anonymous = call(stack, "payment-gateway", "POST", "/v1/authorizations", body, key)
    by_pricing = call(stack, "payment-gateway", "POST", "/v1/authorizations", body,
                      {**key, **as_service(stack.key_dir, "pricing-engine", "payment-gateway")})  # fmt: skip
    assert (anonymous.status_code, by_pricing.status_code) == (401, 403)
