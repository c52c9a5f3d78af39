"""Cancellation terms through the real services: free until the deadline, then the first night (with
its taxes) is kept; the gateway refunds exactly the rest, the trace of ``booking.cancel`` says both
amounts, and the audit's money check agrees."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bookline.audit.checks import Policy, run_checks
from bookline.audit.collect import collect
from conftest import start_stack
from support.booking import Client, as_service, fresh_stay
from support.spans import one

ADMIN_TOKEN = "terms-test-admin-token"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # recovery picks up a cancellation whose refund failed within a second
    s = start_stack(
        tmp_path_factory.mktemp("terms"),
        admin_token=ADMIN_TOKEN,
        saga_stale_after_s=0.5,
        # the payment reconciler looks at a cancelled booking within a second
        reconcile_settle_after_s=0.3,
        reconcile_interval_s=0.2,
    )
    yield s
    s.stop()


def cancel(client: Client, booking_id: str) -> dict:
    answer = client.cancel(booking_id)
    assert answer.status_code == 200, answer.text
    # the trace of the cancellation itself (the answer's trace_id is the booking's)
    return {**answer.json(), "cancel_trace_id": answer.headers["traceresponse"].split("-")[1]}


def test_a_cancellation_before_the_deadline_refunds_everything(stack, client: Client):
    booked = client.book(client.body(property_id="prop-00001", stay=fresh_stay()))
    assert booked.status_code == 201, booked.text
    created = booked.json()
    terms = created["cancellation"]
    assert datetime.fromisoformat(terms["free_cancellation_until"]) > datetime.now(UTC)
    cancelled = cancel(client, created["booking_id"])
    assert cancelled["status"] == "cancelled"
    assert (cancelled["refund_minor"], cancelled["cancellation_penalty_minor"]) == (created["total_minor"], 0)
    ledger = client.ledger(created["reservation_id"])
    assert (ledger["captured_minor"], ledger["refunded_minor"]) == (created["total_minor"], created["total_minor"])
    span = one(stack.spans(cancelled["cancel_trace_id"]), "booking.cancel")
    assert span.attributes["payment.refund_minor"] == created["total_minor"]
    assert span.attributes["booking.cancellation_penalty_minor"] == 0


def test_a_late_cancellation_keeps_the_first_night_and_refunds_the_rest(stack, client: Client):
    today = datetime.now(UTC).date()
    booked = client.book(client.body(property_id="prop-00003", stay=(today, today + timedelta(days=2))))
    assert booked.status_code == 201, booked.text
    created = booked.json()
    terms = created["cancellation"]
    assert datetime.fromisoformat(terms["free_cancellation_until"]) <= datetime.now(UTC)
    penalty = terms["penalty_minor"]
    assert 0 < penalty < created["total_minor"]
    cancelled = cancel(client, created["booking_id"])
    assert cancelled["cancellation_penalty_minor"] == penalty
    assert cancelled["refund_minor"] == created["total_minor"] - penalty
    assert cancelled["payment"]["status"] == "refunded"
    ledger = client.ledger(created["reservation_id"])
    assert ledger["captured_minor"] == created["total_minor"]
    assert ledger["refunded_minor"] == created["total_minor"] - penalty
    [auth] = ledger["authorizations"]
    assert auth["status"] == "partially_refunded"
    spans = stack.spans(cancelled["cancel_trace_id"])
    assert one(spans, "booking.cancel").attributes["booking.cancellation_penalty_minor"] == penalty
    assert one(spans, "payment.refund").attributes["payment.refund_minor"] == created["total_minor"] - penalty
    # cancelling again changes nothing: no second refund
    assert cancel(client, created["booking_id"])["refund_minor"] == created["total_minor"] - penalty
    assert client.ledger(created["reservation_id"])["refunded_minor"] == created["total_minor"] - penalty


def test_the_audit_counts_the_penalty_as_money_rightly_kept(stack, client: Client):
    today = datetime.now(UTC).date()
    late = client.book(client.body(property_id="prop-00002", stay=(today, today + timedelta(days=1)))).json()
    early = client.book(client.body(property_id="prop-00002", stay=fresh_stay())).json()
    kept = client.book(client.body(property_id="prop-00002", stay=fresh_stay())).json()
    for booking in (late, early):
        cancel(client, booking["booking_id"])
    results = {r.check: r for r in run_checks(collect(stack.settings, ADMIN_TOKEN), Policy(grace_s=0))}
    money = results["money_balances"]
    assert money.violations == [], money.violations
    assert money.checked >= 3, kept


def test_a_refund_that_failed_is_finished_by_recovery_with_the_amount_the_terms_decided(stack, client: Client):
    today = datetime.now(UTC).date()
    booked = client.book(client.body(property_id="prop-00001", stay=(today, today + timedelta(days=3))))
    assert booked.status_code == 201, booked.text
    created = booked.json()
    penalty = created["cancellation"]["penalty_minor"]
    assert 0 < penalty < created["total_minor"]
    stack.stop_service("payment-gateway")
    try:
        cancelled = cancel(client, created["booking_id"])
    finally:
        stack.restart_service("payment-gateway")
    assert cancelled["status"] == "cancelled" and cancelled["payment"]["status"] == "refund_pending"
    deadline = time.monotonic() + 20
    while client.get(f"/bookings/{created['booking_id']}").json()["payment"]["status"] != "refunded":
        assert time.monotonic() < deadline, "recovery did not finish the refund"
        time.sleep(0.1)
    ledger = client.ledger(created["reservation_id"])
    assert ledger["refunded_minor"] == created["total_minor"] - penalty  # not everything


def test_the_payment_reconciler_leaves_a_late_cancellations_penalty_where_it_is(stack, client: Client):
    today = datetime.now(UTC).date()
    booked = client.book(
        client.body(property_id="prop-00002", stay=(today + timedelta(days=1), today + timedelta(days=4)))
    )
    assert booked.status_code == 201, booked.text
    created = booked.json()
    cancelled = cancel(client, created["booking_id"])
    penalty = cancelled["cancellation_penalty_minor"]
    assert penalty > 0
    deadline = time.monotonic() + 15
    while "settle" not in (steps := client.get(f"/bookings/{created['booking_id']}").json()["steps"]):
        assert time.monotonic() < deadline, "the payment reconciler did not look at the booking"
        time.sleep(0.1)
    assert steps["settle"] == "checked"  # not "repaired": the penalty is the gateway's to keep
    ledger = client.ledger(created["reservation_id"])
    assert ledger["captured_minor"] - ledger["refunded_minor"] == penalty


def test_confirmation_service_refuses_amounts_that_are_not_the_price_split_in_two(stack, client: Client):
    booked = client.book(client.body(property_id="prop-00001", stay=fresh_stay()))
    assert booked.status_code == 201, booked.text
    created = booked.json()
    url = f"{stack.url('confirmation-service')}/confirmations/{created['reservation_id']}"
    headers = as_service(stack.key_dir, "booking-service", "confirmation-service")
    total = created["total_minor"]
    for body in ({"refund_minor": total, "cancellation_penalty_minor": 1}, {"refund_minor": 0},
                 {"refund_minor": total + 100, "cancellation_penalty_minor": 0}):  # fmt: skip
        refused = httpx.post(f"{url}/cancel", json=body, headers=headers, timeout=10)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_cancellation_amounts"
    assert httpx.get(url, headers=headers, timeout=10).json()["status"] == "confirmed"  # nothing changed
