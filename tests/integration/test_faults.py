"""Faults turned on in the fault file of a running stack (every service on its real port, over real
HTTP): each one changes what happens, and each one that fires leaves a ``fault_injected`` event with
its name on the span of the step it affected. The services re-read the file while they run.

(The crash points exit the process, so they are proven under ``bookline up``: tests/e2e/test_faults_cli.py.)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bookline.faults import FaultFile
from support.booking import Client, fresh_stay
from support.spans import by_name, one
from support.stack import InProcessStack


@pytest.fixture
def faults(stack: InProcessStack) -> Iterator[FaultFile]:
    """The fault file of the running stack, as `bookline faults` writes it; cleared after each test."""
    file = FaultFile(stack.settings.faults_path)
    file.clear()
    yield file
    file.clear()


def fault_names(span: Any) -> list[str]:
    return [e.attributes["fault.name"] for e in span.events if e.name == "fault_injected"]


def eventually(fetch: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def spans_of_booking(stack: InProcessStack, name: str, booking_id: str) -> list[Any]:
    return [s for s in by_name(stack.spans(), name) if s.attributes.get("booking.id") == booking_id]


def notifications(stack: InProcessStack, booking_id: str) -> list[dict]:
    """What notification-service recorded as sent for the booking (its own database)."""
    conn = sqlite3.connect(stack.settings.data_dir / "notification.db")
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute("SELECT * FROM sent_notifications WHERE booking_id = ?", (booking_id,)).fetchall()
    finally:
        conn.close()
    return [dict(r) for r in rows]


def test_a_decline_rate_of_one_declines_an_approving_card_and_the_trace_says_why(stack, client: Client, faults):
    faults.set({"gateway.decline_rate": "1.0"})
    r = client.book(client.body())

    assert r.status_code == 402, r.text
    error = r.json()["error"]
    assert (error["code"], error["decline_reason"]) == ("payment_declined", "card_declined")
    trace = stack.spans(r.json()["trace_id"])
    assert fault_names(one(trace, "gateway.authorize")) == ["gateway.decline_rate"]
    assert one(trace, "booking.create").attributes["booking.outcome"] == "declined"
    assert "payment_declined" in [e.name for e in one(trace, "booking.process_payment").events]
    ledger = client.ledger(error["reservation_id"])
    assert (ledger["authorized_minor"], ledger["captured_minor"], ledger["open_minor"]) == (0, 0, 0)


def test_a_timeout_rate_of_one_is_resolved_by_lookup_into_one_charge(stack, client: Client, faults):
    faults.set({"gateway.timeout_rate": "1.0"})
    r = client.book(client.body())

    # the answer came after the caller's timeout, but the authorization was made: the saga finds it
    assert r.status_code == 201, r.text
    booking = r.json()
    trace_id = booking["trace_id"]
    authorize = eventually(
        lambda: by_name(stack.spans(trace_id), "gateway.authorize"), what="the late gateway.authorize span"
    )
    assert [fault_names(s) for s in authorize] == [["gateway.timeout_rate"]]
    payment = one(stack.spans(trace_id), "booking.process_payment")
    assert [e.attributes["error.type"] for e in payment.events if e.name == "payment_retry"] == ["timeout"]
    ledger = client.ledger(booking["reservation_id"])
    assert len(ledger["authorizations"]) == 1
    assert ledger["captured_minor"] == booking["total_minor"]


def test_an_error_rate_of_one_fails_the_payment_with_nothing_authorized(stack, client: Client, faults):
    faults.set({"gateway.error_rate": "1.0"})
    r = client.book(client.body())

    assert r.status_code == 502, r.text
    trace = stack.spans(r.json()["trace_id"])
    authorize = one(trace, "gateway.authorize")
    assert fault_names(authorize) == ["gateway.error_rate"]
    assert authorize.status.status_code.name == "ERROR"
    assert one(trace, "booking.create").attributes["booking.outcome"] == "payment_error"
    assert client.ledger(r.json()["error"]["reservation_id"])["authorizations"] == []


def test_the_availability_delay_slows_the_search_and_shows_on_its_span(stack, client: Client, faults):
    faults.set({"availability.delay_ms": "300"})
    check_in, check_out = fresh_stay()
    params = {"property_id": "prop-00001", "check_in": check_in.isoformat(), "check_out": check_out.isoformat(),
              "guests": 2}  # fmt: skip
    delayed = client.get("/availability", **params)
    assert delayed.status_code == 200, delayed.text
    assert delayed.json()["rooms"]

    search = one(stack.spans(delayed.headers["traceresponse"].split("-")[1]), "availability.search")
    assert fault_names(search) == ["availability.delay_ms"]
    assert search.end_time - search.start_time >= 300_000_000  # ns: the delay happened inside the span

    faults.clear()
    normal = client.get("/availability", **params)
    assert fault_names(one(stack.spans(normal.headers["traceresponse"].split("-")[1]), "availability.search")) == []


def test_a_hold_ttl_shorter_than_the_payment_expires_the_hold_before_confirmation(stack, client: Client, faults):
    # the hold lives 0.1 s; the gateway takes 0.35 s (under the caller's 0.5 s timeout) to authorize
    faults.set({"hold.ttl_seconds": "0.1", "gateway.latency_ms": "350"})
    r = client.book(client.body())

    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "hold_expired"
    trace = stack.spans(r.json()["trace_id"])
    lock = one(trace, "booking.acquire_lock")
    assert fault_names(lock) == ["hold.ttl_seconds"]
    assert lock.attributes["booking.lock_ttl_ms"] == 100
    assert "gateway.latency_ms" in fault_names(one(trace, "gateway.authorize"))
    assert "hold_expired" in [e.name for e in one(trace, "booking.confirm").events]
    assert one(trace, "booking.create").attributes["booking.outcome"] == "expired"
    # the authorization the expired hold could not use was given back
    assert client.ledger(error["reservation_id"])["open_minor"] == 0


def test_changing_the_file_while_the_stack_runs_changes_what_happens(stack, client: Client, faults):
    assert client.book(client.body()).status_code == 201
    faults.set({"gateway.decline_rate": "1"})
    assert client.book(client.body()).status_code == 402
    faults.set({"gateway.decline_rate": "none"})
    assert client.book(client.body()).status_code == 201


def test_failed_deliveries_are_retried_until_the_fault_is_cleared_then_one_email_is_sent(stack, client: Client, faults):
    faults.set({"notification.failure_rate": "1.0"})
    r = client.book(client.body())
    assert r.status_code == 201, r.text
    booking_id = r.json()["booking_id"]

    failed = eventually(
        lambda: [s for s in spans_of_booking(stack, "booking.confirmed process", booking_id) if fault_names(s)],
        what="a delivery attempt failed by the fault",
    )
    assert fault_names(failed[0]) == ["notification.failure_rate"]
    assert failed[0].status.status_code.name == "ERROR"
    assert notifications(stack, booking_id) == []
    assert not (stack.settings.mail_dir / f"{booking_id}-confirmed.eml").exists()

    faults.clear()
    sent = eventually(lambda: notifications(stack, booking_id), timeout=30, what="the e-mail after the fault cleared")
    assert len(sent) == 1
    assert (stack.settings.mail_dir / f"{booking_id}-confirmed.eml").exists()
    assert len(spans_of_booking(stack, "notification.send_email", booking_id)) == 1
    processed = spans_of_booking(stack, "booking.confirmed process", booking_id)
    assert [fault_names(s) for s in processed[:-1]] == [["notification.failure_rate"]] * (len(processed) - 1)
    assert fault_names(processed[-1]) == []


def test_a_redelivered_message_is_processed_again_as_a_duplicate_and_sends_no_second_email(
    stack, client: Client, faults
):
    faults.set({"queue.redelivery_rate": "1.0"})
    r = client.book(client.body())
    assert r.status_code == 201, r.text
    booking_id = r.json()["booking_id"]

    processed = eventually(
        lambda: (p := spans_of_booking(stack, "booking.confirmed process", booking_id)) and len(p) >= 2 and p,
        what="the message processed a second time",
    )
    first, second = sorted(processed, key=lambda s: s.start_time)[:2]
    assert fault_names(first) == ["queue.redelivery_rate"]  # its ack was turned into a redelivery
    assert first.attributes["messaging.message.id"] == second.attributes["messaging.message.id"]
    assert second.attributes.get("notification.duplicate") is True
    assert fault_names(second) == []  # delivered once more, not forever
    time.sleep(1.0)  # a third delivery would be due by now
    assert len(spans_of_booking(stack, "booking.confirmed process", booking_id)) == 2
    assert len(notifications(stack, booking_id)) == 1
    assert len(spans_of_booking(stack, "notification.send_email", booking_id)) == 1
