"""The background jobs of two replicas at the same moment, on PostgreSQL: the outbox relays publish
every event once, the hold sweepers expire every hold once; each claims its work (SKIP LOCKED, a
claim with an expiry) instead of doing what the other does. (Saga recovery and its fencing:
test_replica_recovery.py.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import insert

import bookline.services.availability as availability_package
import bookline.services.confirmation as confirmation_package
from bookline.adapters.db import Database
from bookline.adapters.migrations import script_location, upgrade
from bookline.adapters.queue import SqliteQueue
from bookline.config import Settings
from bookline.services.availability import handlers as availability
from bookline.services.availability.tables import holds, room_night_claims
from bookline.services.common.outbox import OutboxRelay, add_to_outbox
from bookline.services.confirmation.tables import outbox
from bookline.telemetry import setup_telemetry
from support.postgres import PG_URL, drop_schemas, new_prefix, require_postgres_async

pytestmark = pytest.mark.postgres

EVENTS = 200
HOLDS = 300


@pytest.fixture
async def schema_prefix():
    await require_postgres_async()
    prefix = new_prefix()
    yield prefix
    await drop_schemas(prefix)


def database(prefix: str, service: str) -> Database:
    settings = Settings(database_url=PG_URL, db_schema_prefix=prefix)
    return Database(settings.database_url_of(service), schema=settings.schema_of(service))


async def test_two_outbox_relays_publish_every_event_once(schema_prefix: str, tmp_path: Path):
    first, second = database(schema_prefix, "confirmation-service"), database(schema_prefix, "confirmation-service")
    await upgrade(first, script_location(confirmation_package.__file__))
    spans = InMemorySpanExporter()
    telemetry = setup_telemetry("confirmation-service", Settings(data_dir=tmp_path), span_exporter=spans)
    queue = SqliteQueue(tmp_path / "queue.db", visibility_timeout_s=30)
    try:
        for i in range(EVENTS):
            async with first.write() as conn:
                await add_to_outbox(conn, outbox, topic="booking.confirmed", payload={"n": i}, event_id=f"e{i}")
        relays = [
            OutboxRelay(db, outbox, queue, telemetry, poll_interval_s=0.01, batch_size=20, owner=f"replica-{n}")
            for n, db in enumerate((first, second), start=1)
        ]

        async def drain(relay: OutboxRelay) -> int:
            total = 0
            while published := await relay.relay_once():
                total += published
            return total

        counts = await asyncio.gather(*(drain(r) for r in relays))
        assert sum(counts) == EVENTS, counts
        assert all(counts), counts  # both took part
        published = Counter(s.attributes["messaging.message.id"] for s in spans.get_finished_spans())
        assert len(published) == EVENTS and set(published.values()) == {1}
    finally:
        await queue.close()
        telemetry.shutdown()
        await first.dispose()
        await second.dispose()


async def test_two_hold_sweepers_expire_every_hold_once(schema_prefix: str):
    first, second = database(schema_prefix, "availability-service"), database(schema_prefix, "availability-service")
    await upgrade(first, script_location(availability_package.__file__))
    past = time.time() - 60
    night = date(2031, 1, 1)
    try:
        async with first.write() as conn:
            rows = [
                {"reservation_id": f"rsv_{uuid.uuid4().hex[:24]}", "room_id": f"room-{i}", "night": night}
                for i in range(HOLDS)
            ]
            await conn.execute(insert(holds), [
                {"reservation_id": r["reservation_id"], "property_id": "prop-1", "room_id": r["room_id"],
                 "check_in": night, "check_out": night + timedelta(days=1), "status": "held", "expires_at": past,
                 "created_at": past, "updated_at": past}
                for r in rows
            ])  # fmt: skip
            await conn.execute(insert(room_night_claims), [{**r, "kind": "hold", "expires_at": past} for r in rows])

        async def sweep(db: Database) -> list[str]:
            swept: list[str] = []
            while found := await availability.sweep_expired_holds(db=db):
                swept += found
            return swept

        one, other = await asyncio.gather(sweep(first), sweep(second))
        assert len(one) + len(other) == HOLDS
        assert not set(one) & set(other)  # no hold expired (and counted) by both
    finally:
        await first.dispose()
        await second.dispose()
