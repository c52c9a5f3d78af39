"""The embedded SQLite queue: idempotent publish, claims with a visibility timeout, ack/nack, and
claims that stay exclusive across connections and processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.adapters.queue import Delivery, SqliteQueue

TOPIC = "booking.confirmed"


@pytest.fixture
async def queue(tmp_path: Path):
    q = SqliteQueue(tmp_path / "queue.db", visibility_timeout_s=30.0)
    yield q
    await q.close()


async def test_published_message_is_received_with_body_headers_and_first_attempt(
    queue: SqliteQueue,
):
    before = time.time()
    await queue.publish(TOPIC, {"booking_id": "b1"}, headers={"traceparent": "00-x"}, message_id="m1")

    [delivery] = await queue.receive([TOPIC], consumer="notification-service")

    assert delivery.message_id == "m1"
    assert delivery.topic == TOPIC
    assert delivery.body == {"booking_id": "b1"}
    assert delivery.headers == {"traceparent": "00-x"}
    assert before <= delivery.published_at <= time.time()
    assert delivery.attempt == 1
    assert delivery.consumer == "notification-service"


async def test_acked_message_is_never_received_again_by_the_group(queue: SqliteQueue):
    await queue.publish(TOPIC, {"n": 1}, headers={}, message_id="m1")
    [delivery] = await queue.receive([TOPIC], consumer="g")
    await queue.ack(delivery)

    assert await queue.receive([TOPIC], consumer="g") == []


async def test_publishing_the_same_message_id_twice_stores_it_once(queue: SqliteQueue):
    await queue.publish(TOPIC, {"n": 1}, headers={}, message_id="m1")
    await queue.publish(TOPIC, {"n": 2}, headers={}, message_id="m1")

    deliveries = await queue.receive([TOPIC], consumer="g")

    assert [(d.message_id, d.body) for d in deliveries] == [("m1", {"n": 1})]


async def test_receive_returns_messages_in_publication_order_and_respects_max(queue: SqliteQueue):
    for i in range(5):
        await queue.publish(TOPIC, {"n": i}, headers={}, message_id=f"m{i}")

    first = await queue.receive([TOPIC], consumer="g", max_messages=3)
    rest = await queue.receive([TOPIC], consumer="g", max_messages=3)

    assert [d.body["n"] for d in first] == [0, 1, 2]
    assert [d.body["n"] for d in rest] == [3, 4]


async def test_receive_only_returns_the_requested_topics(queue: SqliteQueue):
    await queue.publish("booking.confirmed", {}, headers={}, message_id="c")
    await queue.publish("booking.cancelled", {}, headers={}, message_id="x")
    await queue.publish("other.topic", {}, headers={}, message_id="o")

    got = await queue.receive(["booking.confirmed", "booking.cancelled"], consumer="g")

    assert sorted(d.message_id for d in got) == ["c", "x"]


async def test_each_consumer_group_receives_every_message(queue: SqliteQueue):
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")

    a = await queue.receive([TOPIC], consumer="a")
    b = await queue.receive([TOPIC], consumer="b")

    assert [d.message_id for d in a] == [d.message_id for d in b] == ["m1"]


async def test_unacked_message_is_redelivered_after_the_visibility_timeout(tmp_path: Path):
    queue = SqliteQueue(tmp_path / "queue.db", visibility_timeout_s=0.2)
    try:
        await queue.publish(TOPIC, {}, headers={}, message_id="m1")
        [first] = await queue.receive([TOPIC], consumer="g")
        assert await queue.receive([TOPIC], consumer="g") == []  # still claimed

        await asyncio.sleep(0.3)
        [again] = await queue.receive([TOPIC], consumer="g")

        assert again.message_id == "m1"
        assert again.attempt == first.attempt + 1 == 2
    finally:
        await queue.close()


async def test_late_ack_of_an_expired_claim_does_not_settle_the_newer_claim(tmp_path: Path):
    queue = SqliteQueue(tmp_path / "queue.db", visibility_timeout_s=0.1)
    try:
        await queue.publish(TOPIC, {}, headers={}, message_id="m1")
        [stale] = await queue.receive([TOPIC], consumer="g")
        await asyncio.sleep(0.15)
        [current] = await queue.receive([TOPIC], consumer="g")

        await queue.ack(stale)  # the first holder wakes up too late
        await asyncio.sleep(0.15)

        [still_there] = await queue.receive([TOPIC], consumer="g")
        assert still_there.attempt == current.attempt + 1
    finally:
        await queue.close()


async def test_nacked_message_comes_back_after_its_delay(queue: SqliteQueue):
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [delivery] = await queue.receive([TOPIC], consumer="g")

    await queue.nack(delivery, delay_s=0.2)

    assert await queue.receive([TOPIC], consumer="g") == []
    await asyncio.sleep(0.3)
    [again] = await queue.receive([TOPIC], consumer="g")
    assert again.message_id == "m1"
    assert again.attempt == 2


async def test_nack_without_delay_makes_the_message_visible_at_once(queue: SqliteQueue):
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [delivery] = await queue.receive([TOPIC], consumer="g")

    await queue.nack(delivery, delay_s=0)

    assert [d.message_id for d in await queue.receive([TOPIC], consumer="g")] == ["m1"]


async def test_a_second_connection_sees_messages_of_the_first(tmp_path: Path):
    producer = SqliteQueue(tmp_path / "queue.db", visibility_timeout_s=30)
    consumer = SqliteQueue(tmp_path / "queue.db", visibility_timeout_s=30)
    try:
        await producer.publish(TOPIC, {"n": 1}, headers={}, message_id="m1")
        assert [d.message_id for d in await consumer.receive([TOPIC], consumer="g")] == ["m1"]
    finally:
        await producer.close()
        await consumer.close()


async def test_connections_opening_a_new_queue_file_at_once_all_succeed(tmp_path: Path):
    # the first opener switches a new file to WAL, which SQLite refuses at once (no busy wait)
    # to anyone else trying at the same moment
    for attempt in range(40):
        path = tmp_path / f"queue{attempt}.db"
        queues = [SqliteQueue(path, visibility_timeout_s=30) for _ in range(8)]
        try:
            await asyncio.gather(*(q.publish(TOPIC, {}, headers={}, message_id=f"m{i}") for i, q in enumerate(queues)))
            assert len(await queues[0].receive([TOPIC], consumer="g")) == 8
        finally:
            for q in queues:
                await q.close()


async def test_two_consumers_never_both_hold_the_same_unacked_message(tmp_path: Path):
    path = tmp_path / "queue.db"
    producer = SqliteQueue(path, visibility_timeout_s=30)
    consumers = [SqliteQueue(path, visibility_timeout_s=30) for _ in range(2)]
    try:
        for i in range(200):
            await producer.publish(TOPIC, {"n": i}, headers={}, message_id=f"m{i:03d}")

        async def drain(q: SqliteQueue) -> list[Delivery]:
            got: list[Delivery] = []
            while batch := await q.receive([TOPIC], consumer="g", max_messages=7):
                got.extend(batch)  # never acked: every claim stays held for 30 s
            return got

        a, b = await asyncio.gather(*(drain(c) for c in consumers))

        ids_a = {d.message_id for d in a}
        ids_b = {d.message_id for d in b}
        assert len(ids_a) == len(a) and len(ids_b) == len(b)
        assert ids_a.isdisjoint(ids_b)
        assert len(ids_a | ids_b) == 200
    finally:
        await producer.close()
        for c in consumers:
            await c.close()


_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from bookline.adapters.queue import SqliteQueue

    async def main():
        q = SqliteQueue(Path(sys.argv[1]), visibility_timeout_s=60)
        got = []
        idle = 0
        while idle < 5:
            batch = await q.receive(["booking.confirmed"], consumer="g", max_messages=5)
            got.extend(d.message_id for d in batch)
            idle = 0 if batch else idle + 1
            await asyncio.sleep(0.005)
        await q.close()
        print(json.dumps(got))

    asyncio.run(main())
    """
)


async def test_consumer_processes_claim_disjoint_messages(tmp_path: Path):
    path = tmp_path / "queue.db"
    producer = SqliteQueue(path, visibility_timeout_s=30)
    for i in range(300):
        await producer.publish(TOPIC, {"n": i}, headers={}, message_id=f"m{i:03d}")
    await producer.close()

    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [json.loads(w.communicate(timeout=60)[0]) for w in workers]

    claimed = [mid for out in outputs for mid in out]
    assert len(claimed) == len(set(claimed)) == 300


async def test_an_acked_message_is_delivered_once_more_when_the_redelivery_fault_strikes(tmp_path: Path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    rate: list[float | None] = [1.0]
    queue = SqliteQueue(
        tmp_path / "queue.db", visibility_timeout_s=30.0, redelivery_rate=lambda: rate[0], redelivery_delay_s=0.1
    )
    try:
        await queue.publish(TOPIC, {"n": 1}, headers={}, message_id="m1")
        [first] = await queue.receive([TOPIC], consumer="g")
        with tracer.start_as_current_span("booking.confirmed process"):
            await queue.ack(first)
        assert await queue.receive([TOPIC], consumer="g") == []  # later, not at once

        await asyncio.sleep(0.15)
        [again] = await queue.receive([TOPIC], consumer="g")
        assert (again.message_id, again.body, again.attempt) == ("m1", {"n": 1}, 2)
        with tracer.start_as_current_span("booking.confirmed process"):
            await queue.ack(again)  # the fault still strikes, but a message comes back only once
        await asyncio.sleep(0.15)
        assert await queue.receive([TOPIC], consumer="g") == []

        first_span, second_span = exporter.get_finished_spans()
        assert [(e.name, dict(e.attributes)) for e in first_span.events] == [
            ("fault_injected", {"fault.name": "queue.redelivery_rate"})
        ]
        assert list(second_span.events) == []

        # the rate is asked on every ack: unset, an ack settles at once
        rate[0] = None
        await queue.publish(TOPIC, {"n": 2}, headers={}, message_id="m2")
        [other] = await queue.receive([TOPIC], consumer="g")
        await queue.ack(other)
        await asyncio.sleep(0.15)
        assert await queue.receive([TOPIC], consumer="g") == []
    finally:
        await queue.close()


async def test_the_redelivery_fault_acts_per_consumer_group(tmp_path: Path):
    queue = SqliteQueue(
        tmp_path / "queue.db", visibility_timeout_s=30.0, redelivery_rate=lambda: 1.0, redelivery_delay_s=0
    )
    try:
        await queue.publish(TOPIC, {}, headers={}, message_id="m1")
        [mine] = await queue.receive([TOPIC], consumer="g")
        [theirs] = await queue.receive([TOPIC], consumer="h")
        await queue.ack(mine)
        [again] = await queue.receive([TOPIC], consumer="g")
        assert again.attempt == 2
        assert await queue.receive([TOPIC], consumer="h") == []  # h's claim is still h's, untouched
        await queue.ack(theirs)
        [theirs_again] = await queue.receive([TOPIC], consumer="h")  # h gets its own one redelivery
        assert theirs_again.attempt == 2
    finally:
        await queue.close()
