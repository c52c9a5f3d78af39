"""Customers prove who they are with a bearer JWT, and see and change only their own bookings.

Every attack is tried through the real booking-service: no token, an expired one, a forged one, one
for another audience, ``alg: none``, the public key used as an HMAC secret; another customer's
booking read and cancelled; an idempotency key replayed by another customer. The control test turns
the ownership check off and shows the same attack succeeding.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bookline.auth.customers import LOCAL_ISSUER, mint_customer_token
from bookline.auth.keys import ISSUER_KEY, KeyDir
from bookline.config import Settings
from conftest import start_stack
from support.booking import Client, fresh_stay, table_counts

BOOKING_ROUTES = [
    ("POST", "/bookings"),
    ("GET", "/bookings"),
    ("GET", "/bookings/bk_" + "a" * 24),
    ("POST", "/bookings/bk_" + "a" * 24 + "/cancel"),
]


def claims(**overrides: object) -> dict:
    now = int(time.time())
    return {"iss": LOCAL_ISSUER, "aud": "bookline", "sub": "mallory", "iat": now, "exp": now + 600, **overrides}


def local_key(client: Client) -> ec.EllipticCurvePrivateKey:
    return KeyDir(client.key_dir).load_private(ISSUER_KEY)


def unsigned(payload: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def bad_tokens(client: Client) -> dict[str, tuple[str, str]]:
    """name -> (token, the error code it must get)."""
    key = local_key(client)
    stranger = ec.generate_private_key(ec.SECP256R1())
    public_pem = (client.key_dir / f"{ISSUER_KEY}.pub.pem").read_bytes()
    return {
        "expired": (jwt.encode(claims(exp=int(time.time()) - 120), key, algorithm="ES256"), "token_expired"),
        "forged with another key": (jwt.encode(claims(), stranger, algorithm="ES256"), "invalid_token"),
        "wrong audience": (jwt.encode(claims(aud="another-app"), key, algorithm="ES256"), "invalid_token"),
        "wrong issuer": (jwt.encode(claims(iss="https://evil.example"), key, algorithm="ES256"), "invalid_token"),
        "alg none": (unsigned(claims()), "invalid_token"),
        "public key as an HMAC secret": (_hmac_with(public_pem, claims()), "invalid_token"),
        "no sub": (
            jwt.encode({k: v for k, v in claims().items() if k != "sub"}, key, algorithm="ES256"),
            "invalid_token",
        ),  # fmt: skip
        "an e-mail as sub": (jwt.encode(claims(sub="guest@example.com"), key, algorithm="ES256"), "invalid_token"),
        "a card number as sub": (jwt.encode(claims(sub="u-4111111111111111"), key, algorithm="ES256"), "invalid_token"),
        "not a JWT": ("hello", "invalid_token"),
    }


def _hmac_with(secret: bytes, payload: dict) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    import hashlib
    import hmac

    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


@pytest.mark.parametrize(("method", "path"), BOOKING_ROUTES)
def test_booking_routes_without_a_token_answer_401_with_a_bearer_challenge(client: Client, method: str, path: str):
    response = client.http.request(method, client.booking_url + path, json={}, headers={"Idempotency-Key": "k"})
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "missing_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_bad_token_answers_401_and_writes_nothing(stack, client: Client):
    body = client.body()
    before = table_counts(stack.settings.data_dir)
    for name, (token, code) in bad_tokens(client).items():
        response = client.http.post(
            f"{client.booking_url}/bookings",
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4()), "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, f"{name}: {response.text}"
        assert response.json()["error"]["code"] == code, name
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"], name
        assert token not in response.text
    assert table_counts(stack.settings.data_dir) == before


def test_a_customer_never_sees_or_cancels_another_customers_booking(client: Client):
    alice = client.book(client.body(), user="alice").json()
    booking_id = alice["booking_id"]

    assert client.get(f"/bookings/{booking_id}", user="alice").status_code == 200
    seen = client.get(f"/bookings/{booking_id}", user="mallory")
    cancelled = client.cancel(booking_id, user="mallory")
    unknown = client.get("/bookings/bk_" + "f" * 24, user="mallory")

    # the same answer as for a booking that does not exist: ids cannot be probed
    assert (seen.status_code, seen.json()["error"]["code"]) == (404, "booking_not_found")
    assert (cancelled.status_code, cancelled.json()["error"]["code"]) == (404, "booking_not_found")
    assert unknown.json()["error"]["code"] == "booking_not_found"
    assert client.get(f"/bookings/{booking_id}", user="alice").json()["status"] == "confirmed"


def test_the_admin_scope_reads_and_cancels_any_booking(client: Client):
    booked = client.book(client.body(), user="bob").json()
    read = client.get(f"/bookings/{booked['booking_id']}", user="support-agent", admin=True)
    cancelled = client.post(f"/bookings/{booked['booking_id']}/cancel", user="support-agent", admin=True)
    assert read.status_code == 200 and read.json()["user_id"] == "bob"
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_the_customer_is_the_tokens_sub(client: Client):
    booked = client.book(client.body(), user="carol").json()
    assert client.get(f"/bookings/{booked['booking_id']}", user="carol").json()["user_id"] == "carol"


def test_get_bookings_lists_only_the_callers_own_newest_first_a_page_at_a_time(client: Client):
    mine = [client.book(client.body(), user="dora").json()["booking_id"] for _ in range(3)]
    client.book(client.body(), user="erin")

    first = client.get("/bookings", user="dora", limit=2).json()
    second = client.get("/bookings", user="dora", limit=2, after=first["next"]).json()
    listed = [b["booking_id"] for b in first["bookings"] + second["bookings"]]

    assert listed == list(reversed(mine))
    assert second["next"] is None
    assert client.get("/bookings", user="nobody-yet").json() == {"bookings": [], "next": None}
    bad = client.get("/bookings", user="dora", after="not-a-cursor")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_cursor")


def test_an_idempotency_key_is_the_customers_own(client: Client):
    body, key = client.body(), str(uuid.uuid4())
    first = client.book(body, key=key, user="frank")
    other = client.book(body, key=key, user="grace")  # same key, same body, another customer
    again = client.book(body, key=key, user="frank")

    assert first.status_code == 201
    assert again.json() == first.json()  # frank's retry replays his answer
    # grace's request is her own: never frank's booking replayed to her
    assert other.json().get("booking_id") != first.json()["booking_id"]
    assert first.json()["booking_id"] not in other.text


def test_a_user_id_in_the_body_is_refused(client: Client):
    response = client.book({**client.body(), "user_id": "someone-else"}, user="heidi")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_control_without_the_ownership_check_another_customer_reads_and_cancels(tmp_path: Path):
    stack = start_stack(tmp_path, unsafe_disable_ownership=True)
    try:
        client = Client.for_stack(stack)
        alice = client.book(client.body(stay=fresh_stay()), user="alice").json()
        seen = client.get(f"/bookings/{alice['booking_id']}", user="mallory")
        cancelled = client.cancel(alice["booking_id"], user="mallory")
    finally:
        stack.stop()
    assert seen.status_code == 200, "the check is off, yet the attack failed: the test cannot see it"
    assert cancelled.json()["status"] == "cancelled"


def test_a_token_minted_by_bookline_token_books(stack, tmp_path: Path):
    token = mint_customer_token(Settings(keys_dir=stack.key_dir), "ivan", ttl_s=60)
    client = Client.for_stack(stack)
    response = httpx.post(
        f"{client.booking_url}/bookings",
        json=client.body(),
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert response.status_code == 201, response.text


def test_the_token_never_reaches_a_span_and_the_user_id_does(stack, client: Client):
    token = client.token("judy")
    booked = client.book(client.body(), user="judy").json()
    client.get(f"/bookings/{booked['booking_id']}", user="judy")
    recorded = []
    for span in stack.spans():
        recorded.append(span.name + json.dumps(dict(span.attributes), default=str))
        recorded.extend(e.name + json.dumps(dict(e.attributes), default=str) for e in span.events)
    text = "\n".join(recorded)
    assert token not in text and token.split(".")[1] not in text
    create = [s for s in stack.spans(booked["trace_id"]) if s.name == "booking.create"]
    assert create[0].attributes["booking.user_id"] == "judy"
