"""What one client can take from Bookline: bookings per customer and per address, failed
authentications per address (429 with Retry-After, shared by replicas through Redis), a body that
never arrives (408) and headers without end (431)."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest

from conftest import start_stack
from support.booking import Client, fresh_stay
from support.redis import redis_url


def _limited(tmp_path: Path, **limits: str):
    values = {
        "rate_limit_bookings_per_customer": "100000/minute",
        "rate_limit_bookings_per_address": "100000/minute",
        "rate_limit_failed_auth_per_address": "100000/minute",
        **limits,
    }
    return start_stack(tmp_path, **values)


def test_a_customer_over_the_booking_limit_gets_429_with_retry_after(tmp_path: Path):
    stack = _limited(tmp_path, rate_limit_bookings_per_customer="2/minute")
    try:
        client = Client.for_stack(stack)
        answers = [client.book(client.body(stay=fresh_stay()), user="eager").status_code for _ in range(3)]
        refused = client.book(client.body(stay=fresh_stay()), user="eager")
        other = client.book(client.body(stay=fresh_stay()), user="patient")
    finally:
        stack.stop()
    assert answers == [201, 201, 429]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other.status_code == 201  # the limit is the customer's, not everyone's


def test_an_address_over_the_booking_limit_gets_429(tmp_path: Path):
    stack = _limited(tmp_path, rate_limit_bookings_per_address="2/minute")
    try:
        client = Client.for_stack(stack)
        answers = [client.book(client.body(stay=fresh_stay()), user=f"guest-{i}").status_code for i in range(3)]
    finally:
        stack.stop()
    assert answers == [201, 201, 429]


def test_failed_authentications_lock_the_address_out_even_with_a_good_token(tmp_path: Path):
    stack = _limited(tmp_path, rate_limit_failed_auth_per_address="3/minute")
    try:
        client = Client.for_stack(stack)
        url = f"{client.booking_url}/bookings"
        guesses = [client.http.get(url, headers={"Authorization": f"Bearer guess-{i}"}) for i in range(4)]
        good = client.get("/bookings", user="rightful")
    finally:
        stack.stop()
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]
    assert good.status_code == 429 and int(good.headers["Retry-After"]) >= 1


def test_replicas_share_the_limit_through_redis(tmp_path: Path):
    url = redis_url()
    customer = f"shared-{uuid.uuid4().hex[:12]}"  # fresh keys in a Redis other runs also use
    one = _limited(tmp_path / "one", redis_url=url, rate_limit_bookings_per_customer="2/minute")
    two = _limited(tmp_path / "two", redis_url=url, rate_limit_bookings_per_customer="2/minute")
    try:
        first, second = Client.for_stack(one), Client.for_stack(two)
        answers = [
            first.book(first.body(stay=fresh_stay()), user=customer).status_code,
            second.book(second.body(stay=fresh_stay()), user=customer).status_code,
            first.book(first.body(stay=fresh_stay()), user=customer).status_code,
        ]
    finally:
        one.stop()
        two.stop()
    assert answers == [201, 201, 429]


def _raw(port: int, request: bytes, wait_s: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as conn:
        conn.sendall(request)
        received = b""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and b"\r\n\r\n" not in received:
            chunk = conn.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory):
    stack = start_stack(tmp_path_factory.mktemp("limits"), request_body_timeout_s=0.5)
    yield stack
    stack.stop()


def test_a_body_that_never_arrives_answers_408_and_frees_the_connection(slow_stack):
    port = slow_stack.settings.port_of("booking-service")
    started = time.monotonic()
    answer = _raw(
        port,
        b"POST /bookings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n"
        b"Authorization: Bearer whatever\r\nIdempotency-Key: k\r\n\r\n{",
        wait_s=10,
    )
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 5


def test_a_slow_body_to_an_internal_service_answers_408_too(slow_stack):
    port = slow_stack.settings.port_of("payment-gateway")
    answer = _raw(
        port,
        b"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n{",
        wait_s=10,
    )
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_headers_beyond_the_bound_answer_431(slow_stack):
    client = Client.for_stack(slow_stack)
    huge = client.http.get(f"{client.booking_url}/properties", headers={"X-Padding": "a" * 20_000})
    many = client.http.get(f"{client.booking_url}/properties", headers={f"X-H{i}": "1" for i in range(120)})
    assert huge.status_code == 431 and huge.json()["error"]["code"] == "headers_too_large"
    assert many.status_code == 431
