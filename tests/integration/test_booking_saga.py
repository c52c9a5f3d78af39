"""The booking saga through the real services over real HTTP: every outcome and its trace."""

from __future__ import annotations

import time
import uuid

import httpx
from opentelemetry.trace import SpanKind, StatusCode

from bookline.domain.ids import new_reservation_id
from support.booking import DECLINE, GATEWAY_500, INSUFFICIENT, SLOW, Client, as_service, fresh_stay
from support.spans import by_name, children, one, ours, service_of


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def hold_status(stack, reservation_id: str) -> str:
    auth = as_service(stack.key_dir, "booking-service", "availability-service")
    r = httpx.get(f"{stack.url('availability-service')}/holds/{reservation_id}", headers=auth)
    return r.json()["status"]


def test_confirmed_booking_is_captured_notified_and_traced_across_six_services(stack, client: Client):
    response = client.book(client.body())
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "confirmed"
    assert created["confirmation_code"].startswith("BKL-")
    assert created["total_minor"] > 0 and len(created["currency"]) == 3
    trace_id = created["trace_id"]
    assert response.headers["traceresponse"].split("-")[1] == trace_id

    booking = client.get(f"/bookings/{created['booking_id']}").json()
    assert booking["status"] == "confirmed"
    assert booking["payment"]["status"] == "captured"
    ledger = client.ledger(created["reservation_id"])
    assert ledger["captured_minor"] == created["total_minor"]
    assert ledger["refunded_minor"] == 0

    mail = stack.settings.mail_dir / f"{created['booking_id']}-confirmed.eml"
    wait_for(mail.exists)
    wait_for(lambda: by_name(stack.spans(trace_id), "booking.confirmed process"))

    spans = stack.spans(trace_id)
    services = {service_of(s) for s in spans}
    assert services >= {
        "booking-service",
        "availability-service",
        "pricing-engine",
        "confirmation-service",
        "payment-gateway",
        "notification-service",
    }
    server = one(spans, "POST /bookings")
    resource = server.resource.attributes
    assert resource["service.namespace"] == "bookline" and resource["service.domain"] == "reservations"
    assert {"service.version", "service.instance.id", "deployment.environment.name"} <= set(resource)
    create = one(spans, "booking.create")
    assert create.parent.span_id == server.context.span_id
    assert create.status.status_code == StatusCode.OK
    assert create.attributes["booking.outcome"] == "confirmed"
    assert create.attributes["booking.confirmation_code"] == created["confirmation_code"]
    steps = [s.name for s in ours(children(spans, create))]
    assert steps == [
        "booking.check_availability",
        "booking.price_quote",
        "booking.acquire_lock",
        "booking.process_payment",
        "booking.confirm",
        "payment.capture",
    ]
    payment = one(spans, "booking.process_payment")
    assert payment.kind == SpanKind.CLIENT
    assert payment.attributes["payment.status"] == "authorized"
    assert payment.attributes["payment.card_last_four"] == "4242"
    lock = one(spans, "booking.acquire_lock")
    assert lock.attributes["booking.lock_acquired"] is True
    assert lock.attributes["booking.lock_type"] == "pessimistic"
    # the queue hop: producer and consumer in the booking's trace, consumer a child of the producer
    publish = one(spans, "booking.confirmed publish")
    process = one(spans, "booking.confirmed process")
    assert publish.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert process.parent.span_id == publish.context.span_id
    assert one(spans, "notification.send_email").parent.span_id == process.context.span_id
    assert not by_name(spans, "booking.rollback")


def test_declined_card_answers_402_releases_the_hold_and_traces_the_rollback(stack, client: Client):
    response = client.book(client.body(card=DECLINE))
    assert response.status_code == 402, response.text
    error = response.json()["error"]
    assert error["code"] == "payment_declined"
    assert error["decline_reason"] == "card_declined"
    reservation_id = error["reservation_id"]
    assert hold_status(stack, reservation_id) == "released"
    ledger = client.ledger(reservation_id)
    assert ledger["captured_minor"] == 0
    assert all(a["status"] != "authorized" for a in ledger["authorizations"])

    spans = stack.spans(response.json()["trace_id"])
    create = one(spans, "booking.create")
    assert create.status.status_code == StatusCode.ERROR
    assert create.attributes["booking.outcome"] == "declined"
    # a 402 is a business outcome: the server spans that answered it are not errors
    assert one(spans, "POST /bookings").status.status_code != StatusCode.ERROR
    assert one(spans, "POST /v1/authorizations").status.status_code != StatusCode.ERROR
    assert len([e for e in create.events if e.name == "exception"]) == 1
    payment = one(spans, "booking.process_payment")
    assert payment.status.status_code != StatusCode.ERROR  # a decline is a business outcome
    declined = [e for e in payment.events if e.name == "payment_declined"]
    assert declined and declined[0].attributes["payment.decline_reason"] == "card_declined"
    rollback = one(spans, "booking.rollback")
    assert rollback.parent.span_id == create.context.span_id
    assert rollback.attributes["booking.rollback.reason"] == "declined"
    assert {s.name for s in ours(children(spans, rollback))} == {"payment.void", "booking.release_lock"}
    assert booking_status(client, error["booking_id"]) == "failed"


def booking_status(client: Client, booking_id: str) -> str:
    return client.get(f"/bookings/{booking_id}").json()["status"]


def test_insufficient_funds_is_a_decline_with_its_reason(client: Client):
    response = client.book(client.body(card=INSUFFICIENT))
    assert response.status_code == 402
    assert response.json()["error"]["decline_reason"] == "insufficient_funds"


def test_gateway_500_answers_502_and_leaves_no_money_or_hold(stack, client: Client):
    response = client.book(client.body(card=GATEWAY_500))
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert hold_status(stack, error["reservation_id"]) == "released"
    ledger = client.ledger(error["reservation_id"])
    assert ledger["authorized_minor"] == 0 or all(a["status"] != "authorized" for a in ledger["authorizations"])
    spans = stack.spans(response.json()["trace_id"])
    assert one(spans, "booking.create").attributes["booking.outcome"] == "payment_error"
    assert one(spans, "booking.process_payment").status.status_code == StatusCode.ERROR


def test_gateway_timeout_with_unknown_outcome_is_resolved_by_key_without_a_second_charge(stack, client: Client):
    response = client.book(client.body(card=SLOW))
    assert response.status_code == 201, response.text
    created = response.json()
    ledger = client.ledger(created["reservation_id"])
    assert len(ledger["authorizations"]) == 1
    assert ledger["captured_minor"] == created["total_minor"]
    payment = one(stack.spans(created["trace_id"]), "booking.process_payment")
    retries = [e for e in payment.events if e.name == "payment_retry"]
    assert retries and retries[0].attributes["error.type"] == "timeout"


def test_same_key_and_body_replays_the_same_booking_and_charges_once(client: Client):
    body = client.body()
    key = str(uuid.uuid4())
    first = client.book(body, key)
    second = client.book(body, key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert len(client.ledger(first.json()["reservation_id"])["authorizations"]) == 1


def test_same_key_with_another_body_is_422(client: Client):
    body = client.body()
    key = str(uuid.uuid4())
    assert client.book(body, key).status_code == 201
    other = {**body, "guests": 1}
    response = client.book(other, key)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_failed_booking_replays_its_failure(client: Client):
    body = client.body(card=DECLINE)
    key = str(uuid.uuid4())
    first = client.book(body, key)
    assert first.status_code == 402
    assert client.book(body, key).json() == first.json()


def test_cancel_after_confirm_refunds_frees_the_nights_and_mails(stack, client: Client):
    stay = fresh_stay()
    body = client.body(stay=stay, property_id="prop-00002", room_id="prop-00002-r001", guests=1)
    created = client.book(body).json()
    response = client.cancel(created["booking_id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert response.json()["payment"]["status"] == "refunded"
    ledger = client.ledger(created["reservation_id"])
    assert ledger["captured_minor"] - ledger["refunded_minor"] == 0
    again = client.book(client.body(stay=stay, property_id="prop-00002", room_id="prop-00002-r001", guests=1))
    assert again.status_code == 201, again.text
    wait_for((stack.settings.mail_dir / f"{created['booking_id']}-cancelled.eml").exists)
    # cancelling twice changes nothing
    assert client.cancel(created["booking_id"]).status_code == 200
    assert client.ledger(created["reservation_id"])["refunded_minor"] == created["total_minor"]


def test_a_failed_booking_cannot_be_cancelled(client: Client):
    failed = client.book(client.body(card=DECLINE)).json()["error"]
    response = client.cancel(failed["booking_id"])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_cancellable"


def test_a_room_held_by_another_reservation_is_refused_with_409(stack, client: Client):
    # the lock_contention event and its competing reservation are asserted where a real race makes
    # them happen: tests/integration/test_concurrency.py
    stay = fresh_stay()
    competitor = new_reservation_id()
    held = httpx.post(
        f"{stack.url('availability-service')}/holds",
        json={
            "reservation_id": competitor,
            "property_id": "prop-00003",
            "room_id": "prop-00003-r002",
            "check_in": stay[0].isoformat(),
            "check_out": stay[1].isoformat(),
            "ttl_seconds": 600,
        },
        headers=as_service(stack.key_dir, "booking-service", "availability-service"),
    )
    assert held.status_code == 201
    response = client.book(client.body(stay=stay, property_id="prop-00003", room_id="prop-00003-r002", guests=1))
    assert response.status_code == 409
    # the search already sees the room taken; a hold placed after the search would be lock_contention
    assert response.json()["error"]["code"] == "unavailable"


def test_unavailable_when_every_room_is_taken(client: Client):
    stay = fresh_stay(1)
    created = [client.book(client.body(stay=stay, property_id="prop-00003", guests=1)) for _ in range(6)]
    assert all(r.status_code == 201 for r in created), [r.text for r in created]
    response = client.book(client.body(stay=stay, property_id="prop-00003", guests=1))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "unavailable"


def test_availability_lists_free_rooms_with_nightly_prices(client: Client):
    check_in, check_out = fresh_stay(3)
    response = client.get(
        "/availability",
        property_id="prop-00001",
        check_in=check_in.isoformat(),
        check_out=check_out.isoformat(),
        guests=2,
    )
    assert response.status_code == 200
    rooms = response.json()["rooms"]
    assert rooms
    for room in rooms:
        assert len(room["nights"]) == 3
        assert room["total_minor"] == room["subtotal_minor"] + room["taxes_minor"]
        assert room["capacity"] >= 2


def test_properties_can_be_listed_by_city_and_read(client: Client):
    everything = client.get("/properties").json()["properties"]
    city = everything[0]["city"]
    in_city = client.get("/properties", city=city).json()["properties"]
    assert in_city and all(p["city"] == city for p in in_city)
    one_property = client.get(f"/properties/{everything[0]['property_id']}").json()
    assert one_property["rooms"]
    assert client.get("/properties/nope").status_code == 404
