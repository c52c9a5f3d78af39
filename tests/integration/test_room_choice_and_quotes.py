"""Which room a booking takes and what it is charged, through the real services: the cheapest free
room that fits (of the type asked for, if any), and the quote of the availability answer honoured
exactly, or refused when the rates changed (409 price_changed) or the quote expired (409
quote_expired), with nothing held or charged."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter

import pytest

from support.booking import Client, fresh_stay
from support.spans import one

PROPERTY = "prop-00002"


def offers(client: Client, stay, *, guests: int = 2, room_type: str | None = None) -> dict:
    params = {"property_id": PROPERTY, "check_in": stay[0].isoformat(), "check_out": stay[1].isoformat(),
              "guests": guests}  # fmt: skip
    if room_type:
        params["room_type"] = room_type
    answer = client.http.get(f"{client.booking_url}/availability", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def price_quote_span(stack, trace_id: str):
    return one(stack.spans(trace_id), "booking.price_quote")


def pricing_db(stack) -> sqlite3.Connection:
    return sqlite3.connect(stack.settings.data_dir / "pricing.db")


def test_the_availability_answer_offers_each_room_with_a_quote_and_its_terms_cheapest_first(client: Client):
    found = offers(client, fresh_stay())
    rooms = found["rooms"]
    assert rooms and found["quote_ttl_seconds"] > 0
    assert [r["total_minor"] for r in rooms] == sorted(r["total_minor"] for r in rooms)
    for room in rooms:
        assert room["quote_id"].startswith("q_") and room["expires_at"]
        terms = room["cancellation"]
        assert terms["free_cancellation_hours"] in (24, 48, 72)
        # the first night, with its taxes
        assert room["nights"][0]["amount_minor"] < terms["penalty_minor"] <= room["total_minor"]
        assert terms["time_zone"] == "Europe/Lisbon"  # prop-00002 is in Porto


def test_without_a_room_the_cheapest_free_room_that_fits_is_booked(stack, client: Client):
    stay = fresh_stay()
    rooms = offers(client, stay)["rooms"]
    cheapest = min(r["total_minor"] for r in rooms)
    booked = client.book(client.body(property_id=PROPERTY, stay=stay))
    assert booked.status_code == 201, booked.text
    created = booked.json()
    assert created["total_minor"] == cheapest
    assert created["room_id"] in {r["room_id"] for r in rooms if r["total_minor"] == cheapest}
    span = price_quote_span(stack, created["trace_id"])
    assert span.attributes["booking.room_id"] == created["room_id"]
    assert span.attributes["booking.room_type"] == created["room_type"]
    assert span.attributes["pricing.quote_reused"] is False


def test_the_next_guest_gets_the_next_cheapest_room(client: Client):
    stay = fresh_stay()
    rooms = offers(client, stay)["rooms"]
    totals = [client.book(client.body(property_id=PROPERTY, stay=stay)).json()["total_minor"] for _ in range(3)]
    assert totals == sorted(r["total_minor"] for r in rooms)[:3]


def test_a_room_type_books_the_cheapest_free_room_of_that_type(stack, client: Client):
    stay = fresh_stay()
    rooms = offers(client, stay)["rooms"]
    kinds = Counter(r["room_type"] for r in rooms)
    kind = next(k for k, n in kinds.most_common() if k != rooms[0]["room_type"]) if len(kinds) > 1 else rooms[0][
        "room_type"]  # fmt: skip
    of_kind = offers(client, stay, room_type=kind)["rooms"]
    assert {r["room_type"] for r in of_kind} == {kind}
    booked = client.book(client.body(property_id=PROPERTY, stay=stay, room_type=kind))
    assert booked.status_code == 201, booked.text
    created = booked.json()
    assert created["room_type"] == kind
    assert created["total_minor"] == min(r["total_minor"] for r in of_kind)
    assert price_quote_span(stack, created["trace_id"]).attributes["booking.room_type"] == kind


def test_a_room_type_the_property_has_not_is_404_and_room_id_with_room_type_is_422(client: Client):
    stay = fresh_stay()
    missing = client.book(client.body(property_id=PROPERTY, stay=stay, room_type="penthouse"))
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "room_type_not_found"
    both = client.book(client.body(property_id=PROPERTY, stay=stay, room_id=f"{PROPERTY}-r001", room_type="double"))
    assert both.status_code == 422


def test_a_quote_is_honoured_exactly(stack, client: Client):
    stay = fresh_stay()
    offer = offers(client, stay)["rooms"][-1]  # the dearest room, which no choice of Bookline's would take
    booked = client.book(client.body(property_id=PROPERTY, stay=stay, quote_id=offer["quote_id"]))
    assert booked.status_code == 201, booked.text
    created = booked.json()
    assert (created["room_id"], created["total_minor"], created["quote_id"]) == (
        offer["room_id"], offer["total_minor"], offer["quote_id"])  # fmt: skip
    assert created["cancellation"] == offer["cancellation"]
    assert client.ledger(created["reservation_id"])["captured_minor"] == offer["total_minor"]
    assert price_quote_span(stack, created["trace_id"]).attributes["pricing.quote_reused"] is True


def test_a_quote_whose_rates_changed_is_refused_with_the_new_total_and_nothing_is_charged(stack, client: Client):
    stay = fresh_stay()
    offer = offers(client, stay)["rooms"][0]
    with pricing_db(stack) as db:
        db.execute("UPDATE rate_plans SET base_rate_minor = base_rate_minor + 1000 WHERE room_id = ?",
                   (offer["room_id"],))  # fmt: skip
    try:
        body = client.body(property_id=PROPERTY, stay=stay, quote_id=offer["quote_id"])
        refused = client.book(body)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "price_changed"
        assert error["quoted_total_minor"] == offer["total_minor"]
        assert error["total_minor"] > offer["total_minor"]
        assert client.ledger(error["reservation_id"])["authorized_minor"] == 0
        span = price_quote_span(stack, refused.json()["trace_id"])
        assert [e.name for e in span.events] == ["price_changed"]
        # the answer carries a quote at the new price: booking with it is charged that
        again = client.book({**body, "quote_id": error["quote_id"]})
        assert again.status_code == 201, again.text
        assert again.json()["total_minor"] == error["total_minor"]
    finally:
        with pricing_db(stack) as db:
            db.execute("UPDATE rate_plans SET base_rate_minor = base_rate_minor - 1000 WHERE room_id = ?",
                       (offer["room_id"],))  # fmt: skip


def test_an_expired_quote_is_refused(stack, client: Client):
    stay = fresh_stay()
    offer = offers(client, stay)["rooms"][0]
    with pricing_db(stack) as db:
        db.execute("UPDATE quotes SET expires_at = ? WHERE quote_id = ?", (time.time() - 1, offer["quote_id"]))
    refused = client.book(client.body(property_id=PROPERTY, stay=stay, quote_id=offer["quote_id"]))
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "quote_expired"
    assert offers(client, stay)["rooms"][0]["room_id"] == offer["room_id"]  # nothing was held


@pytest.mark.parametrize("change", ["stay", "guests", "property"])
def test_a_quote_for_another_stay_is_refused(client: Client, change: str):
    stay = fresh_stay()
    offer = offers(client, stay, guests=1)["rooms"][0]
    body = client.body(property_id=PROPERTY, stay=stay, guests=1, quote_id=offer["quote_id"])
    if change == "stay":
        body["check_out"] = fresh_stay()[1].isoformat()
        body["check_in"] = stay[0].isoformat()
    elif change == "guests":
        body["guests"] = 2
    else:
        body["property_id"] = "prop-00003"
    refused = client.book(body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "quote_mismatch"


def test_a_quoted_room_taken_meanwhile_is_refused_as_unavailable(client: Client):
    stay = fresh_stay()
    offer = offers(client, stay)["rooms"][0]
    first = client.book(client.body(property_id=PROPERTY, stay=stay, room_id=offer["room_id"]))
    assert first.status_code == 201, first.text
    late = client.book(client.body(property_id=PROPERTY, stay=stay, quote_id=offer["quote_id"]))
    assert late.status_code == 409, late.text
    assert late.json()["error"]["code"] == "unavailable"
