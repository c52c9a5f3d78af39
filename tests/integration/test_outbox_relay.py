"""The transactional outbox: rows written in a transaction are relayed to the queue once, under a
PRODUCER span that continues the trace of the transaction that wrote them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import MetaData, select, update

from bookline.adapters.db import Database
from bookline.adapters.queue import SqliteQueue
from bookline.config import Settings
from bookline.services.common.outbox import OutboxRelay, add_to_outbox, outbox_table
from bookline.telemetry import setup_telemetry

TOPIC = "booking.confirmed"
CONSUMER = "test"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(tmp_path: Path, exporter: InMemorySpanExporter):
    t = setup_telemetry("confirmation-service", Settings(data_dir=tmp_path), span_exporter=exporter)
    yield t
    t.shutdown()


@pytest.fixture
async def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'confirmation.db'}")
    yield database
    await database.dispose()


@pytest.fixture
def table():
    return outbox_table(MetaData())


@pytest.fixture
async def outbox(db: Database, table):
    async with db.write() as conn:
        await conn.run_sync(table.metadata.create_all)
    return table


@pytest.fixture
async def queue(tmp_path: Path):
    q = SqliteQueue(tmp_path / "queue.db", visibility_timeout_s=30)
    yield q
    await q.close()


@pytest.fixture
def relay(db, outbox, queue, telemetry) -> OutboxRelay:
    return OutboxRelay(db, outbox, queue, telemetry, poll_interval_s=0.02)


def _traceparent(value: str) -> tuple[str, str]:
    _version, trace_id, span_id, _flags = value.split("-")
    return trace_id, span_id


async def test_row_written_in_a_transaction_is_relayed_once_under_a_producer_span(
    db, outbox, queue, relay, telemetry, exporter
):
    with telemetry.tracer.start_as_current_span("booking.confirm") as writer:
        async with db.write() as conn:
            event_id = await add_to_outbox(
                conn, outbox, topic=TOPIC, payload={"booking_id": "b1", "reservation_id": "r1"}
            )

    assert await relay.relay_once() == 1

    [delivery] = await queue.receive([TOPIC], consumer=CONSUMER)
    assert delivery.message_id == event_id
    assert delivery.body == {"booking_id": "b1", "reservation_id": "r1"}

    [producer] = [s for s in exporter.get_finished_spans() if s.name == "booking.confirmed publish"]
    assert producer.kind is SpanKind.PRODUCER
    writer_ctx = writer.get_span_context()
    assert producer.context.trace_id == writer_ctx.trace_id
    assert producer.parent is not None and producer.parent.span_id == writer_ctx.span_id
    assert dict(producer.attributes) == {
        "messaging.system": "bookline-sqlite-queue",
        "messaging.operation.name": "publish",
        "messaging.operation.type": "send",
        "messaging.destination.name": TOPIC,
        "messaging.message.id": event_id,
        "booking.reservation_id": "r1",
    }
    # the message carries the producer span, not the writer
    trace_id, span_id = _traceparent(delivery.headers["traceparent"])
    assert trace_id == format(producer.context.trace_id, "032x")
    assert span_id == format(producer.context.span_id, "016x")

    async with db.read() as conn:
        published_at = (await conn.execute(select(outbox.c.published_at))).scalar_one()
    assert published_at is not None


async def test_row_stores_the_trace_context_of_its_transaction(db, outbox, telemetry):
    with telemetry.tracer.start_as_current_span("booking.confirm") as writer:
        async with db.write() as conn:
            await add_to_outbox(conn, outbox, topic=TOPIC, payload={}, event_id="e1")

    async with db.read() as conn:
        headers = json.loads((await conn.execute(select(outbox.c.headers))).scalar_one())
    ctx = writer.get_span_context()
    assert _traceparent(headers["traceparent"]) == (
        format(ctx.trace_id, "032x"),
        format(ctx.span_id, "016x"),
    )


async def test_relaying_twice_publishes_once(db, outbox, queue, relay):
    async with db.write() as conn:
        await add_to_outbox(conn, outbox, topic=TOPIC, payload={"n": 1}, event_id="e1")

    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0

    assert [d.message_id for d in await queue.receive([TOPIC], consumer=CONSUMER)] == ["e1"]


async def test_a_crash_between_publish_and_mark_only_republishes_the_same_message(db, outbox, queue, relay):
    async with db.write() as conn:
        await add_to_outbox(conn, outbox, topic=TOPIC, payload={"n": 1}, event_id="e1")
    await relay.relay_once()
    async with db.write() as conn:  # as if the mark had been lost
        await conn.execute(update(outbox).values(published_at=None))

    assert await relay.relay_once() == 1

    assert [d.message_id for d in await queue.receive([TOPIC], consumer=CONSUMER)] == ["e1"]


async def test_a_rolled_back_transaction_leaves_nothing_to_relay(db, outbox, relay):
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await add_to_outbox(conn, outbox, topic=TOPIC, payload={}, event_id="e1")
            raise RuntimeError("the booking failed")

    assert await relay.relay_once() == 0


async def test_rows_are_relayed_in_the_order_they_were_written(db, outbox, queue, relay):
    for i in range(5):
        async with db.write() as conn:
            await add_to_outbox(conn, outbox, topic=TOPIC, payload={"n": i}, event_id=f"e{4 - i}")

    assert await relay.relay_once() == 5

    got = await queue.receive([TOPIC], consumer=CONSUMER)
    assert [d.body["n"] for d in got] == [0, 1, 2, 3, 4]


async def test_background_relay_publishes_new_rows_and_stops_promptly(db, outbox, queue, relay):
    relay.start()
    try:
        async with db.write() as conn:
            await add_to_outbox(conn, outbox, topic=TOPIC, payload={}, event_id="e1")
        for _ in range(200):
            if got := await queue.receive([TOPIC], consumer=CONSUMER):
                break
            await asyncio.sleep(0.01)
        assert [d.message_id for d in got] == ["e1"]
    finally:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await relay.stop()
        assert loop.time() - started < 1.0


async def test_idle_polls_of_an_instrumented_database_leave_no_spans(db, outbox, relay, telemetry, exporter):
    telemetry.instrument_database(db)
    with telemetry.tracer.start_as_current_span("probe"):
        async with db.read() as conn:
            await conn.execute(select(outbox.c.event_id))
    if [s.name for s in exporter.get_finished_spans()] == ["probe"]:
        pytest.fail("telemetry.instrument_database did not trace the transaction")
    exporter.clear()

    for _ in range(3):
        assert await relay.relay_once() == 0

    assert exporter.get_finished_spans() == ()
