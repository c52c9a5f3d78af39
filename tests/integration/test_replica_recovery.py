"""Two replicas of booking-service recovering the same stalled bookings at the same moment, on
PostgreSQL, against the real services: every booking is recovered once, by the replica that took its
lease; and the replica that ran the booking before (it died after the authorization) can write
nothing once it is taken over, even if it comes back. The control turns the fencing off: both
replicas then recover the same bookings, and each compensation runs twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.domain import ids
from bookline.domain.guest import Guest
from bookline.saga.deps import payment_key
from bookline.saga.lease import Lease, LeaseLost, holding
from bookline.saga.orchestrator import Orchestrator
from bookline.saga.recovery import Recovery
from bookline.saga.store import SagaStore
from bookline.services.booking.api import saga_deps
from bookline.telemetry import setup_telemetry
from conftest import start_stack
from support.booking import Client
from support.postgres import PG_URL, drop_schemas, new_prefix, require_postgres

pytestmark = pytest.mark.postgres

STALLED = 12
LEASE_S = 0.3


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory):
    require_postgres()
    prefix = new_prefix()
    # the stack's own booking-service never recovers here: the two replicas below are the only ones
    stack = start_stack(
        tmp_path_factory.mktemp("replicas"), database_url=PG_URL, db_schema_prefix=prefix,
        saga_recovery_interval_s=3600.0, reconcile_interval_s=3600.0,
    )  # fmt: skip
    yield stack
    stack.stop()
    asyncio.run(drop_schemas(prefix))


@dataclass
class Replica:
    """What a booking-service replica recovers with: its own store (a connection pool of its own on
    the same schema), its own clients, its own spans."""

    store: SagaStore
    recovery: Recovery
    spans: InMemorySpanExporter


@asynccontextmanager
async def replica(settings: Settings, name: str, *, fencing: bool = True) -> AsyncIterator[Replica]:
    spans = InMemorySpanExporter()
    telemetry = setup_telemetry("booking-service", settings, span_exporter=spans)
    db = Database(settings.database_url_of("booking-service"), schema=settings.schema_of("booking-service"))
    store = SagaStore(db, owner=name, lease_s=LEASE_S, fencing=fencing)
    deps = saga_deps(settings, telemetry, store)
    try:
        yield Replica(store, Recovery(Orchestrator(deps)), spans)
    finally:
        for c in (deps.availability, deps.pricing, deps.gateway, deps.confirmation):
            await c.aclose()
        await db.dispose()
        telemetry.shutdown()


async def stall_bookings(dead: Replica, stack, n: int, *, days_ahead: int) -> list[str]:
    """What a replica killed right after the authorization leaves behind: ``n`` pending bookings, each
    with a real hold at availability-service and a real authorization at the gateway, and a lease
    that nobody renews."""
    client = Client.for_stack(stack)
    deps = dead.recovery.deps
    check_in = datetime.now(UTC).date() + timedelta(days=days_ahead)
    booked = []
    for i in range(n):
        booking_id, reservation_id = ids.new_booking_id(), ids.new_reservation_id()
        room = f"prop-00001-r{i % 6 + 1:03d}"
        stay_in = check_in + timedelta(days=3 * (i // 6))
        card = await asyncio.to_thread(client.tokenize)
        row = {
            "booking_id": booking_id, "reservation_id": reservation_id, "user_id": "user-1", "source": "api",
            "property_id": "prop-00001", "room_id": room, "check_in": stay_in,
            "check_out": stay_in + timedelta(days=1), "guests": 1, "payment_method": "card",
            "card_last_four": card["last4"], "total_minor": 10000, "currency": "EUR",
            **{f"guest_{k}": v for k, v in Guest("Ana Lopez", "ana@example.com").as_dict().items()},
        }  # fmt: skip
        lease = await dead.store.start_booking(key=None, request_hash="-", booking=row, steps={"hold": "started"})
        with holding(lease):
            await deps.availability.place_hold(
                reservation_id=reservation_id, property_id="prop-00001", room_id=room,
                check_in=stay_in, check_out=stay_in + timedelta(days=1), ttl_seconds=600,
            )  # fmt: skip
            await dead.store.record(booking_id, {"hold": "done", "authorize": "started"})
            auth = await deps.gateway.authorize(
                token=card["token"], amount_minor=10000, currency="EUR", reservation_id=reservation_id,
                idempotency_key=payment_key("auth", reservation_id),
            )  # fmt: skip
            await dead.store.record(booking_id, {"authorize": "done"}, payment_transaction_id=auth["id"])
        booked.append(booking_id)
    await asyncio.sleep(LEASE_S * 2)  # the dead replica's leases run out
    return booked


def recoveries(*replicas: Replica) -> Counter:
    return Counter(
        span.attributes["booking.id"]
        for r in replicas
        for span in r.spans.get_finished_spans()
        if span.name == "booking.recover"
    )


def voids(*replicas: Replica) -> int:
    return sum(1 for r in replicas for span in r.spans.get_finished_spans() if span.name == "payment.void")


async def race(settings: Settings, stack, *, fencing: bool, days_ahead: int) -> tuple[list[str], Counter, int, Replica]:
    # a saga quiet for the length of its lease is stalled
    settings = settings.model_copy(update={"saga_stale_after_s": LEASE_S})
    async with AsyncExitStack() as stack_of:
        dead = await stack_of.enter_async_context(replica(settings, "replica-dead"))
        first = await stack_of.enter_async_context(replica(settings, "replica-1", fencing=fencing))
        second = await stack_of.enter_async_context(replica(settings, "replica-2", fencing=fencing))
        booked = await stall_bookings(dead, stack, STALLED, days_ahead=days_ahead)
        await asyncio.gather(first.recovery.recover_once(), second.recovery.recover_once())
        # the replica that died comes back and carries on with the saga where it stopped
        came_back = []
        for booking_id in booked:
            with holding(Lease(booking_id, 1)):
                try:
                    await dead.store.record(booking_id, {"confirm": "started"})
                    came_back.append(booking_id)
                except LeaseLost:
                    pass
        steps = {b: await first.store.steps(b) for b in booked}
        assert all(s["hold"] == "compensated" and s["authorize"] == "compensated" for s in steps.values()), steps
        return came_back, recoveries(first, second), voids(first, second), dead


def test_two_replicas_recover_each_stalled_booking_once_and_the_dead_one_writes_nothing(pg_stack):
    came_back, recovered, voided, _dead = asyncio.run(race(pg_stack.settings, pg_stack, fencing=True, days_ahead=200))
    assert len(recovered) == STALLED and set(recovered.values()) == {1}, recovered
    assert voided == STALLED
    assert came_back == []  # every write of the old holder refused


def test_control_without_fencing_both_replicas_recover_the_same_bookings(pg_stack):
    came_back, recovered, voided, _dead = asyncio.run(race(pg_stack.settings, pg_stack, fencing=False, days_ahead=300))
    assert len(recovered) == STALLED
    assert max(recovered.values()) == 2, recovered  # recovered twice: a double compensation
    assert voided > STALLED
    assert came_back  # and the dead replica's writes still land (here: on the dead replica's own store)
