"""The payment reconciler through the real services: an authorization that lands at the gateway
after the saga gave up on it is voided, and the repair is traced."""

from __future__ import annotations

import pytest

from conftest import start_stack
from support.booking import Client
from support.spans import one
from support.up import wait_for


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory):
    # the gateway takes 1.5 s before it authorizes; booking-service gives up on a payment after two
    # attempts of 0.5 s, and rolls back before the authorization exists
    stack = start_stack(
        tmp_path_factory.mktemp("reconciler"),
        gateway_latency_ms=1500,
        payment_timeout_s=0.5,
        payment_max_attempts=2,
        reconcile_interval_s=0.3,
        reconcile_settle_after_s=3.0,
    )
    yield stack
    stack.stop()


def test_an_authorization_that_lands_after_the_rollback_is_voided_by_the_reconciler(slow_gateway):
    client = Client.for_stack(slow_gateway)
    response = client.book(client.body())
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert error["code"] == "payment_timeout"
    reservation_id, booking_id = error["reservation_id"], error["booking_id"]

    # without the reconciler the money would stay here: the saga's rollback found nothing to void
    ledger = wait_for(lambda: (lg := client.ledger(reservation_id))["open_minor"] > 0 and lg)
    assert ledger["authorizations"][0]["status"] == "authorized"
    booking = client.get(f"/bookings/{booking_id}").json()
    assert booking["status"] == "failed"

    ledger = wait_for(lambda: (lg := client.ledger(reservation_id))["open_minor"] == 0 and lg)
    assert ledger["voided_minor"] == ledger["authorized_minor"] > 0
    assert ledger["captured_minor"] == 0
    assert client.get(f"/bookings/{booking_id}").json()["steps"]["settle"] == "repaired"

    repair = wait_for(lambda: [s for s in slow_gateway.spans() if s.name == "booking.reconcile"])
    span = one(repair, "booking.reconcile")
    assert span.attributes["booking.id"] == booking_id
    assert span.attributes["booking.reconcile.action"] == "voided"
    assert span.attributes["payment.amount_minor"] == ledger["authorized_minor"]
    # linked to the booking's own trace, where the failure is
    assert format(span.links[0].context.trace_id, "032x") == booking["trace_id"]
    void = [s for s in slow_gateway.spans(format(span.context.trace_id, "032x")) if s.name == "payment.void"]
    assert void and void[0].parent.span_id == span.context.span_id


def test_a_failed_booking_without_money_left_is_only_marked_checked(slow_gateway):
    client = Client.for_stack(slow_gateway)
    # the late answer is a decline: nothing is held on the card, so there is nothing to repair
    response = client.book(client.body(card="4000000000000002"))
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    booking_id = error["booking_id"]
    wait_for(lambda: client.ledger(error["reservation_id"])["authorizations"])
    wait_for(lambda: client.get(f"/bookings/{booking_id}").json()["steps"].get("settle") == "checked")
    assert not [
        s for s in slow_gateway.spans() if s.name == "booking.reconcile" and s.attributes["booking.id"] == booking_id
    ]
