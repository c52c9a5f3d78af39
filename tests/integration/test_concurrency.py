"""Many guests, one room, one night: exactly one booking, on SQLite and on PostgreSQL.

The control test switches the room-night key off (a test-only setting) and shows that the very same
test then sees a double booking: the key, not an application check, is what prevents it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from conftest import start_stack
from support.booking import Client, fresh_stay
from support.postgres import PG_URL, drop_schemas, new_prefix, require_postgres
from support.spans import ours

CONCURRENT = 50
ROOM = "prop-00001-r002"


async def _storm(client: Client, bodies: list[dict]) -> list[httpx.Response]:
    """Every body at once, each from its own guest."""
    headers = [{"Idempotency-Key": str(uuid.uuid4()), **client.auth(f"user-{i}")} for i in range(len(bodies))]
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=CONCURRENT)) as http:
        return await asyncio.gather(
            *(
                http.post(f"{client.booking_url}/bookings", json=b, headers=h)
                for b, h in zip(bodies, headers, strict=True)
            )
        )


def storm_one_room(stack) -> list[httpx.Response]:
    client = Client.for_stack(stack)
    stay = fresh_stay(1)
    bodies = [client.body(stay=stay, room_id=ROOM, guests=1) for _ in range(CONCURRENT)]
    return asyncio.run(_storm(client, bodies))


def assert_exactly_one_booking_and_no_money_held(stack, responses: list[httpx.Response]) -> None:
    codes = Counter(r.status_code for r in responses)
    assert codes[201] == 1, codes
    assert codes[409] == CONCURRENT - 1, codes
    losers = [r.json()["error"] for r in responses if r.status_code == 409]
    assert {e["code"] for e in losers} <= {"lock_contention", "unavailable"}
    client = Client.for_stack(stack)
    for error in losers:
        ledger = client.ledger(error["reservation_id"])
        assert all(a["status"] != "authorized" for a in ledger["authorizations"]), ledger
        assert ledger["captured_minor"] == 0


def confirmed(responses: list[httpx.Response]) -> int:
    return sum(1 for r in responses if r.status_code == 201)


@pytest.fixture
def sqlite_stack(tmp_path: Path):
    stack = start_stack(tmp_path)
    yield stack
    stack.stop()


def test_fifty_guests_racing_for_one_room_night_on_sqlite_get_one_booking(sqlite_stack):
    responses = storm_one_room(sqlite_stack)
    assert_exactly_one_booking_and_no_money_held(sqlite_stack, responses)


def test_contention_is_visible_on_the_lock_span_with_the_competing_reservation(sqlite_stack):
    responses = storm_one_room(sqlite_stack)
    contended = [r.json() for r in responses if r.status_code == 409 and r.json()["error"]["code"] == "lock_contention"]
    assert contended, "no request reached the lock step while another held the room"
    body = contended[0]
    assert body["error"]["competing_reservation"].startswith("rsv_")
    spans = ours(sqlite_stack.spans(body["trace_id"]))
    lock = next(s for s in spans if s.name == "booking.acquire_lock")
    event = next(e for e in lock.events if e.name == "lock_contention")
    assert event.attributes["booking.competing_reservation"] == body["error"]["competing_reservation"]
    assert event.attributes["booking.contention_reason"] in ("held_by_other_reservation", "already_booked")
    create = next(s for s in spans if s.name == "booking.create")
    assert create.attributes["booking.outcome"] == "contention"


def test_control_without_the_room_night_key_the_same_race_double_books(tmp_path: Path):
    stack = start_stack(tmp_path, unsafe_disable_room_night_guard=True)
    try:
        responses = storm_one_room(stack)
    finally:
        stack.stop()
    assert confirmed(responses) > 1, "the guard is off, yet no double booking happened: the test cannot see one"


@pytest.mark.postgres
def test_fifty_guests_racing_for_one_room_night_on_postgres_get_one_booking(tmp_path: Path):
    require_postgres()
    prefix = new_prefix()
    stack = start_stack(tmp_path, database_url=PG_URL, db_schema_prefix=prefix)
    try:
        responses = storm_one_room(stack)
        assert_exactly_one_booking_and_no_money_held(stack, responses)
    finally:
        stack.stop()
        asyncio.run(drop_schemas(prefix))


@pytest.mark.postgres
def test_control_on_postgres_without_the_room_night_key_the_race_double_books(tmp_path: Path):
    require_postgres()
    prefix = new_prefix()
    stack = start_stack(tmp_path, database_url=PG_URL, db_schema_prefix=prefix, unsafe_disable_room_night_guard=True)
    try:
        responses = storm_one_room(stack)
    finally:
        stack.stop()
        asyncio.run(drop_schemas(prefix))
    assert confirmed(responses) > 1
