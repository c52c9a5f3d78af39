"""Kill booking-service in the middle of a booking; when it starts again it finishes or compensates
that booking by itself. Every service runs as its own OS process here, as in production."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bookline.seed import seed_inventory
from support.booking import Client, as_service
from support.stack import ProcessStack, stack_settings

pytestmark = pytest.mark.stack
CRASH_EXIT_CODE = 70


@pytest.fixture
def processes(tmp_path: Path):
    settings = stack_settings(tmp_path, saga_stale_after_s=1.0, saga_recovery_interval_s=0.2)
    asyncio.run(seed_inventory(settings, properties=2, rooms_per_property=4, seed=3))
    stack = ProcessStack(settings)
    yield stack
    stack.stop()


def crash_mid_booking(stack: ProcessStack, point: str) -> tuple[Client, dict, str]:
    for spec in (
        "availability-service",
        "pricing-engine",
        "confirmation-service",
        "payment-gateway",
        "notification-service",
    ):
        stack.start(spec)
    stack.start("booking-service", BOOKLINE_CRASH_AT=point)
    stack.wait_ready([s for s in stack.procs])
    client = Client.for_stack(stack)
    body, key = client.body(), str(uuid.uuid4())
    with pytest.raises(httpx.TransportError):
        client.book(body, key)
    assert stack.wait_exit("booking-service") == CRASH_EXIT_CODE
    stack.start("booking-service")
    stack.wait_ready(["booking-service"])
    return client, body, key


def settled_answer(client: Client, body: dict, key: str, timeout: float = 30.0) -> httpx.Response:
    """Resubmit with the same key until the booking is no longer in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.book(body, key)
        if not (response.status_code == 409 and response.json()["error"]["code"] == "idempotency_in_flight"):
            return response
        time.sleep(0.3)
    raise AssertionError("the interrupted booking was never recovered")


def test_crash_after_authorize_is_compensated_on_restart(processes: ProcessStack):
    client, body, key = crash_mid_booking(processes, "after_authorize")
    response = settled_answer(client, body, key)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "booking_interrupted"
    ledger = client.ledger(error["reservation_id"])
    assert [a["status"] for a in ledger["authorizations"]] == ["voided"]
    hold = httpx.get(
        f"{processes.settings.url_of('availability-service')}/holds/{error['reservation_id']}",
        headers=as_service(processes.key_dir, "booking-service", "availability-service"),
    ).json()
    assert hold["status"] == "released"
    booking = client.get(f"/bookings/{error['booking_id']}").json()
    assert booking["status"] == "failed"


def test_crash_after_confirm_is_completed_on_restart(processes: ProcessStack):
    client, body, key = crash_mid_booking(processes, "after_confirm")
    response = settled_answer(client, body, key)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["confirmation_code"].startswith("BKL-")
    ledger = client.ledger(created["reservation_id"])
    assert ledger["captured_minor"] == created["total_minor"]
    booking = client.get(f"/bookings/{created['booking_id']}").json()
    assert booking["status"] == "confirmed" and booking["payment"]["status"] == "captured"
    mail = processes.settings.mail_dir / f"{created['booking_id']}-confirmed.eml"
    deadline = time.monotonic() + 10
    while not mail.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mail.exists()


def wait_until_held(db: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT count(*) FROM holds WHERE status = 'held'").fetchone()[0]:
                return
        time.sleep(0.02)
    raise AssertionError("no hold was placed")


def test_a_compensation_that_failed_is_retried_until_it_succeeds(tmp_path: Path):
    """availability-service is down when a declined booking rolls back: the hold cannot be released
    then, the booking still ends failed, and recovery releases the hold once the service is back."""
    from conftest import start_stack

    stack = start_stack(tmp_path, gateway_latency_ms=1500.0, payment_timeout_s=5.0, saga_stale_after_s=0.5)
    try:
        client = Client.for_stack(stack)
        body = client.body(card="4000000000000002")
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.book, body)
            wait_until_held(tmp_path / "availability.db")  # the gateway is still deciding
            stack.stop_service("availability-service")
            response = pending.result(timeout=30)
        assert response.status_code == 402
        error = response.json()["error"]
        booking = client.get(f"/bookings/{error['booking_id']}").json()
        assert booking["status"] == "failed"
        assert booking["steps"]["hold"] == "done"  # not compensated yet: the release failed
        stack.restart_service("availability-service")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            booking = client.get(f"/bookings/{error['booking_id']}").json()
            if booking["steps"]["hold"] == "compensated":
                break
            time.sleep(0.2)
        assert booking["steps"]["hold"] == "compensated"
        hold = httpx.get(
            f"{stack.url('availability-service')}/holds/{error['reservation_id']}",
            headers=as_service(stack.key_dir, "booking-service", "availability-service"),
        ).json()
        assert hold["status"] == "released"
        recovered = [s for s in stack.spans() if s.name == "booking.recover"]
        assert any(s.attributes.get("booking.id") == error["booking_id"] for s in recovered)
    finally:
        stack.stop()
