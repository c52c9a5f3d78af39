"""Fencing and idempotency, each with the control that shows what happens without the guard."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import start_stack
from support.booking import Client
from support.spans import one

# the gateway takes longer than the hold lives, so the hold expires before confirmation
SLOW_PAYMENT = {"hold_ttl_seconds": 0.4, "gateway_latency_ms": 800.0, "payment_timeout_s": 3.0}


@pytest.fixture
def slow_stack(tmp_path: Path):
    stack = start_stack(tmp_path, **SLOW_PAYMENT)
    yield stack
    stack.stop()


def client_of(stack) -> Client:
    return Client.for_stack(stack)


def test_hold_expired_before_confirm_voids_the_authorization_and_answers_409(slow_stack):
    client = client_of(slow_stack)
    response = client.book(client.body())
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "hold_expired"
    ledger = client.ledger(error["reservation_id"])
    assert [a["status"] for a in ledger["authorizations"]] == ["voided"]
    booking = client.get(f"/bookings/{error['booking_id']}").json()
    assert booking["status"] == "failed" and booking["outcome"] == "expired"
    spans = slow_stack.spans(response.json()["trace_id"])
    confirm = one(spans, "booking.confirm")
    assert any(e.name == "hold_expired" for e in confirm.events)
    assert one(spans, "booking.create").attributes["booking.outcome"] == "expired"
    expired = slow_stack.metric_points("availability-service", "booking.holds.expired")
    assert sum(p.value for p in expired) >= 1


def test_control_without_fencing_an_expired_hold_becomes_a_booking(tmp_path: Path):
    # the sweeper would free the expired hold's nights first and hide what fencing-off allows
    stack = start_stack(tmp_path, unsafe_disable_fencing=True, hold_sweep_interval_s=3600.0, **SLOW_PAYMENT)
    try:
        client = client_of(stack)
        response = client.book(client.body())
    finally:
        stack.stop()
    assert response.status_code == 201, "fencing is off, yet the stale hold was refused: the test cannot see it"


async def _twice_at_once(url: str, body: dict, key: str, auth: dict[str, str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as http:
        first = asyncio.create_task(http.post(url, json=body, headers={"Idempotency-Key": key, **auth}))
        await asyncio.sleep(0.3)  # the first is now waiting for the (slow) gateway
        second = await http.post(url, json=body, headers={"Idempotency-Key": key, **auth})
        return [await first, second]


def test_same_key_while_the_first_is_running_is_409_in_flight(tmp_path: Path):
    stack = start_stack(tmp_path, gateway_latency_ms=800.0, payment_timeout_s=3.0)
    try:
        client = client_of(stack)
        body = client.body()
        first, second = asyncio.run(
            _twice_at_once(f"{client.booking_url}/bookings", body, str(uuid.uuid4()), client.auth())
        )
    finally:
        stack.stop()
    # whichever claimed the key first books; the other is told it is in flight
    answers = sorted([first, second], key=lambda r: r.status_code)
    assert [r.status_code for r in answers] == [201, 409]
    assert answers[1].json()["error"]["code"] == "idempotency_in_flight"


def test_control_without_idempotency_a_duplicate_submit_books_and_charges_twice(tmp_path: Path):
    stack = start_stack(tmp_path, unsafe_disable_idempotency=True)
    try:
        client = client_of(stack)
        body = client.body()
        key = str(uuid.uuid4())
        first, second = client.book(body, key), client.book(body, key)
    finally:
        stack.stop()
    assert first.status_code == second.status_code == 201
    assert first.json()["booking_id"] != second.json()["booking_id"], "the guard is off, yet one booking"
