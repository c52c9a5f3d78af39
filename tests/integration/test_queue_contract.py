"""The contract of the queue port (bookline.adapters.queue.port), run against every adapter: the
embedded SQLite file and NATS JetStream (its own stream per test, deleted afterwards; without a
server the NATS half skips, and fails with CI=true).

Then what only NATS JetStream does: its stream and consumers, claims it will not settle late, and the
reads of the admin scans. The SQLite file's own tests are in test_sqlite_queue.py."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.adapters.queue import Delivery, MessageQueue, SqliteQueue, queue_from
from bookline.adapters.queue.nats import NatsQueue, durable_name, stream_name
from bookline.config import Settings
from bookline.telemetry import extract_context, inject_context
from support.nats import NATS_URL, delete_streams, new_stream_prefix, require_nats_async

TOPIC = "booking.confirmed"
MESSAGING_SYSTEM = {"sqlite": "bookline-sqlite-queue", "nats": "nats"}


@dataclass
class Backend:
    """Where a test's queues live: one SQLite file, or one JetStream stream; every queue made here
    shares it, as the processes of one Bookline do."""

    name: str
    factory: Callable[..., MessageQueue]
    made: list[MessageQueue] = field(default_factory=list)

    def make(self, visibility_timeout_s: float = 30.0, **kwargs: Any) -> MessageQueue:
        queue = self.factory(visibility_timeout_s=visibility_timeout_s, **kwargs)
        self.made.append(queue)
        return queue


async def _backend(name: str, tmp_path: Path) -> AsyncIterator[Backend]:
    if name == "sqlite":
        backend = Backend(name, lambda **kw: SqliteQueue(tmp_path / "queue.db", **kw))
        prefix = None
    else:
        await require_nats_async()
        prefix = new_stream_prefix()
        backend = Backend(name, lambda **kw: NatsQueue(NATS_URL, stream=stream_name(prefix), **kw))
    try:
        yield backend
    finally:
        for queue in backend.made:
            await queue.close()
        if prefix is not None:
            await delete_streams(prefix)


@pytest.fixture(params=["sqlite", "nats"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async for b in _backend(request.param, tmp_path):
        yield b


@pytest.fixture
async def nats_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    async for b in _backend("nats", tmp_path):
        yield b


@pytest.fixture
def queue(backend: Backend) -> MessageQueue:
    return backend.make()


async def drain(queue: MessageQueue, consumer: str = "g", max_messages: int = 7) -> list[Delivery]:
    """Claim until nothing is left, acking nothing: every claim stays held for its visibility timeout."""
    got: list[Delivery] = []
    while batch := await queue.receive([TOPIC], consumer=consumer, max_messages=max_messages):
        got.extend(batch)
    return got


# ---- the contract: every adapter ----------------------------------------------------------------


async def test_published_message_is_received_with_body_headers_and_first_attempt(queue: MessageQueue):
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


async def test_the_queue_names_its_messaging_system(backend: Backend, queue: MessageQueue):
    assert queue.messaging_system == MESSAGING_SYSTEM[backend.name]


async def test_receive_returns_at_once_when_there_is_nothing(queue: MessageQueue):
    started = time.monotonic()
    assert await queue.receive([TOPIC, "booking.cancelled"], consumer="g") == []
    assert await queue.receive([TOPIC, "booking.cancelled"], consumer="g") == []
    assert time.monotonic() - started < 0.5


async def test_acked_message_is_never_received_again_by_the_group(queue: MessageQueue):
    await queue.publish(TOPIC, {"n": 1}, headers={}, message_id="m1")
    [delivery] = await queue.receive([TOPIC], consumer="g")
    await queue.ack(delivery)

    assert await queue.receive([TOPIC], consumer="g") == []


async def test_publishing_the_same_message_id_twice_stores_it_once(queue: MessageQueue):
    await queue.publish(TOPIC, {"n": 1}, headers={}, message_id="m1")
    await queue.publish(TOPIC, {"n": 2}, headers={}, message_id="m1")

    deliveries = await queue.receive([TOPIC], consumer="g")

    assert [(d.message_id, d.body) for d in deliveries] == [("m1", {"n": 1})]


async def test_the_same_message_id_from_two_producers_is_stored_once(backend: Backend):
    # the outbox relays of two replicas, or one relay before and after a crash
    first, second = backend.make(), backend.make()
    await asyncio.gather(
        first.publish(TOPIC, {"n": 1}, headers={}, message_id="m1"),
        second.publish(TOPIC, {"n": 1}, headers={}, message_id="m1"),
    )

    assert [d.message_id for d in await drain(first)] == ["m1"]


async def test_receive_returns_messages_in_publication_order_and_respects_max(queue: MessageQueue):
    for i in range(5):
        await queue.publish(TOPIC, {"n": i}, headers={}, message_id=f"m{i}")

    first = await queue.receive([TOPIC], consumer="g", max_messages=3)
    rest = await queue.receive([TOPIC], consumer="g", max_messages=3)

    assert [d.body["n"] for d in first] == [0, 1, 2]
    assert [d.body["n"] for d in rest] == [3, 4]


async def test_receive_only_returns_the_requested_topics(queue: MessageQueue):
    await queue.publish("booking.confirmed", {}, headers={}, message_id="c")
    await queue.publish("booking.cancelled", {}, headers={}, message_id="x")
    await queue.publish("other.topic", {}, headers={}, message_id="o")

    got = await queue.receive(["booking.confirmed", "booking.cancelled"], consumer="g")

    assert sorted(d.message_id for d in got) == ["c", "x"]
    assert [d.message_id for d in await queue.receive(["other.topic"], consumer="g")] == ["o"]


async def test_each_consumer_group_receives_every_message(queue: MessageQueue):
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")

    a = await queue.receive([TOPIC], consumer="a")
    b = await queue.receive([TOPIC], consumer="b")

    assert [d.message_id for d in a] == [d.message_id for d in b] == ["m1"]


async def test_a_second_queue_sees_the_messages_of_the_first(backend: Backend):
    producer, consumer = backend.make(), backend.make()
    await producer.publish(TOPIC, {"n": 1}, headers={}, message_id="m1")

    assert [d.message_id for d in await consumer.receive([TOPIC], consumer="g")] == ["m1"]


async def test_the_trace_context_travels_in_the_message_headers(queue: MessageQueue):
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("booking.confirmed publish") as span:
        token = context.attach(baggage.set_baggage("booking.id", "b1"))
        try:
            headers = inject_context({})
        finally:
            context.detach(token)
        await queue.publish(TOPIC, {}, headers=headers, message_id="m1")

    [delivery] = await queue.receive([TOPIC], consumer="g")

    assert delivery.headers == headers
    assert set(headers) == {"traceparent", "baggage"}
    received = extract_context(delivery.headers)
    parent = trace.get_current_span(received).get_span_context()
    assert parent.trace_id == span.get_span_context().trace_id
    assert parent.span_id == span.get_span_context().span_id
    assert baggage.get_baggage("booking.id", received) == "b1"


async def test_unacked_message_is_redelivered_after_the_visibility_timeout(backend: Backend):
    queue = backend.make(visibility_timeout_s=0.2)
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [first] = await queue.receive([TOPIC], consumer="g")
    assert await queue.receive([TOPIC], consumer="g") == []  # still claimed

    await asyncio.sleep(0.3)
    [again] = await queue.receive([TOPIC], consumer="g")

    assert again.message_id == "m1"
    assert again.attempt == first.attempt + 1 == 2


async def test_two_consumers_of_a_group_never_hold_the_same_message_and_what_they_drop_comes_back(
    backend: Backend,
):
    # two queues = two processes' worth (for NATS: two connections)
    producer = backend.make()
    consumers = [backend.make(visibility_timeout_s=2.0) for _ in range(2)]
    for i in range(60):
        await producer.publish(TOPIC, {"n": i}, headers={}, message_id=f"m{i:03d}")
    started = time.monotonic()

    a, b = await asyncio.gather(*(drain(c) for c in consumers))
    assert time.monotonic() - started < 1.5, "drained too slowly for the test to mean anything"

    ids_a, ids_b = {d.message_id for d in a}, {d.message_id for d in b}
    assert len(ids_a) == len(a) and len(ids_b) == len(b)
    assert ids_a.isdisjoint(ids_b)
    assert len(ids_a | ids_b) == 60
    assert {d.attempt for d in a + b} == {1}
    assert [await c.receive([TOPIC], consumer="g") for c in consumers] == [[], []]  # all held

    # nobody acked: after the visibility timeout every message is claimable again, once
    await asyncio.sleep(max(0.0, 2.2 - (time.monotonic() - started)))
    a2, b2 = await asyncio.gather(*(drain(c) for c in consumers))

    ids_a2, ids_b2 = {d.message_id for d in a2}, {d.message_id for d in b2}
    assert ids_a2.isdisjoint(ids_b2)
    assert len(a2) + len(b2) == len(ids_a2 | ids_b2) == 60
    assert {d.attempt for d in a2 + b2} == {2}


async def test_late_ack_of_an_expired_claim_does_not_settle_the_newer_claim(backend: Backend):
    queue = backend.make(visibility_timeout_s=0.1)
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [stale] = await queue.receive([TOPIC], consumer="g")
    await asyncio.sleep(0.15)
    [current] = await queue.receive([TOPIC], consumer="g")

    await queue.ack(stale)  # the first holder wakes up too late
    await asyncio.sleep(0.15)

    [still_there] = await queue.receive([TOPIC], consumer="g")
    assert still_there.attempt == current.attempt + 1


async def test_a_late_ack_or_nack_from_another_consumer_does_not_touch_the_claim_that_took_over(
    backend: Backend,
):
    first, second = backend.make(visibility_timeout_s=0.3), backend.make(visibility_timeout_s=0.3)
    await first.publish(TOPIC, {}, headers={}, message_id="m1")
    [stale] = await first.receive([TOPIC], consumer="g")
    await asyncio.sleep(0.4)
    [current] = await second.receive([TOPIC], consumer="g")
    assert current.attempt == 2

    await first.nack(stale, delay_s=0)  # would hand the message to a third consumer at once
    await first.ack(stale)  # would settle the second one's claim

    assert await first.receive([TOPIC], consumer="g") == []  # still the second one's
    await asyncio.sleep(0.4)
    [again] = await first.receive([TOPIC], consumer="g")  # not settled either: it came back
    assert again.attempt == 3
    await first.ack(again)
    assert await second.receive([TOPIC], consumer="g") == []


async def test_settling_an_older_delivery_after_the_message_came_back_changes_nothing(backend: Backend):
    queue = backend.make(visibility_timeout_s=0.3)
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [older] = await queue.receive([TOPIC], consumer="g")
    await queue.nack(older, delay_s=0)
    [newer] = await queue.receive([TOPIC], consumer="g")
    assert newer.attempt == 2

    await queue.ack(older)

    await asyncio.sleep(0.4)
    [again] = await queue.receive([TOPIC], consumer="g")
    assert again.attempt == 3


async def test_nacked_message_comes_back_after_its_delay(queue: MessageQueue):
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [delivery] = await queue.receive([TOPIC], consumer="g")

    await queue.nack(delivery, delay_s=0.2)

    assert await queue.receive([TOPIC], consumer="g") == []
    await asyncio.sleep(0.3)
    [again] = await queue.receive([TOPIC], consumer="g")
    assert again.message_id == "m1"
    assert again.attempt == 2


async def test_nack_without_delay_makes_the_message_visible_at_once(queue: MessageQueue):
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [delivery] = await queue.receive([TOPIC], consumer="g")

    await queue.nack(delivery, delay_s=0)

    assert [d.message_id for d in await queue.receive([TOPIC], consumer="g")] == ["m1"]


async def test_an_acked_message_is_delivered_once_more_when_the_redelivery_fault_strikes(backend: Backend):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    rate: list[float | None] = [1.0]
    queue = backend.make(redelivery_rate=lambda: rate[0], redelivery_delay_s=0.2)
    await queue.publish(TOPIC, {"n": 1}, headers={}, message_id="m1")
    [first] = await queue.receive([TOPIC], consumer="g")
    with tracer.start_as_current_span("booking.confirmed process"):
        await queue.ack(first)
    assert await queue.receive([TOPIC], consumer="g") == []  # later, not at once

    await asyncio.sleep(0.3)
    [again] = await queue.receive([TOPIC], consumer="g")
    assert (again.message_id, again.body, again.attempt) == ("m1", {"n": 1}, 2)
    with tracer.start_as_current_span("booking.confirmed process"):
        await queue.ack(again)  # the fault still strikes, but a message comes back only once
    await asyncio.sleep(0.3)
    assert await queue.receive([TOPIC], consumer="g") == []

    first_span, second_span = exporter.get_finished_spans()
    assert [(e.name, dict(e.attributes or {})) for e in first_span.events] == [
        ("fault_injected", {"fault.name": "queue.redelivery_rate"})
    ]
    assert list(second_span.events) == []

    # the rate is asked on every ack: unset, an ack settles at once
    rate[0] = None
    await queue.publish(TOPIC, {"n": 2}, headers={}, message_id="m2")
    [other] = await queue.receive([TOPIC], consumer="g")
    await queue.ack(other)
    await asyncio.sleep(0.3)
    assert await queue.receive([TOPIC], consumer="g") == []


async def test_the_redelivery_fault_acts_per_consumer_group(backend: Backend):
    queue = backend.make(redelivery_rate=lambda: 1.0, redelivery_delay_s=0)
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


# ---- choosing the adapter -----------------------------------------------------------------------


def test_without_a_queue_url_the_queue_is_the_sqlite_file(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, queue_visibility_timeout_s=12)

    queue = queue_from(settings)

    assert isinstance(queue, SqliteQueue)
    assert (queue.path, queue.visibility_timeout_s) == (settings.queue_path, 12)


def test_a_nats_queue_url_selects_jetstream_in_the_stream_of_the_prefix(tmp_path: Path):
    settings = Settings(
        data_dir=tmp_path, queue_url="nats://127.0.0.1:4222", queue_stream_prefix="t1_", queue_visibility_timeout_s=12
    )

    queue = queue_from(settings, redelivery_rate=lambda: 0.5)

    assert isinstance(queue, NatsQueue)
    assert (queue.url, queue.stream, queue.visibility_timeout_s) == ("nats://127.0.0.1:4222", "t1_BOOKLINE", 12)
    assert queue.redelivery_rate is not None and queue.redelivery_rate() == 0.5
    assert not settings.queue_path.exists()  # nothing was opened


@pytest.mark.parametrize(
    ("url", "prefix"), [("redis://127.0.0.1:6379", ""), ("127.0.0.1:4222", ""), ("nats://127.0.0.1:4222", "a.b")]
)
def test_a_queue_url_or_stream_prefix_that_cannot_work_is_refused(tmp_path: Path, url: str, prefix: str):
    with pytest.raises(ValueError):
        queue_from(Settings(data_dir=tmp_path, queue_url=url, queue_stream_prefix=prefix))


# ---- NATS JetStream only ------------------------------------------------------------------------


async def test_jetstream_keeps_one_stream_and_a_durable_consumer_per_group_and_topic(nats_backend: Backend):
    queue = nats_backend.make(visibility_timeout_s=7.5)
    assert isinstance(queue, NatsQueue)
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    await queue.receive([TOPIC, "booking.cancelled"], consumer="notification-service")

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        stream = await js.stream_info(queue.stream)
        assert stream.config.subjects == [f"{queue.stream}.>"]
        assert (stream.config.retention, stream.config.storage) == ("limits", "file")
        assert stream.config.duplicate_window == 600
        for topic in (TOPIC, "booking.cancelled"):
            info = await js.consumer_info(queue.stream, durable_name("notification-service", topic))
            assert info.config.durable_name == durable_name("notification-service", topic)
            assert info.config.filter_subject == f"{queue.stream}.{topic}"
            assert (info.config.ack_policy, info.config.ack_wait, info.config.max_deliver) == ("explicit", 7.5, -1)
    finally:
        await nc.close()


async def test_jetstream_will_not_settle_an_expired_claim_even_when_nobody_took_it_over(nats_backend: Backend):
    # JetStream would settle whatever claim is current by then; the adapter does not send it, so the
    # message comes back once more (the SQLite queue settles it: see test_sqlite_queue.py)
    queue = nats_backend.make(visibility_timeout_s=0.3)
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [late] = await queue.receive([TOPIC], consumer="g")
    await asyncio.sleep(0.35)

    await queue.ack(late)

    [again] = await queue.receive([TOPIC], consumer="g")
    assert again.attempt == 2


async def test_jetstream_stream_deleted_under_a_running_queue_is_created_again(nats_backend: Backend):
    queue = nats_backend.make()
    assert isinstance(queue, NatsQueue)
    await queue.publish(TOPIC, {}, headers={}, message_id="m1")
    [first] = await queue.receive([TOPIC], consumer="g")
    await queue.ack(first)
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(queue.stream)
    finally:
        await nc.close()

    await queue.publish(TOPIC, {}, headers={}, message_id="m2")

    assert [d.message_id for d in await queue.receive([TOPIC], consumer="g")] == ["m2"]


async def test_jetstream_messages_can_be_read_for_the_admin_scans(nats_backend: Backend):
    queue = nats_backend.make()
    assert isinstance(queue, NatsQueue)
    assert [m async for m in queue.stored_messages()] == []  # no stream yet
    await queue.publish(TOPIC, {"booking_id": "b1"}, headers={"traceparent": "00-x"}, message_id="m1")
    await queue.publish("booking.cancelled", {"booking_id": "b2"}, headers={}, message_id="m2")
    [delivery] = await queue.receive([TOPIC], consumer="g")

    stored = [m async for m in queue.stored_messages()]
    later = [m async for m in queue.stored_messages(since=stored[1].published_at)]

    assert [(m.seq, m.message_id, m.topic, m.body, m.headers) for m in stored] == [
        (1, "m1", TOPIC, '{"booking_id":"b1"}', {"traceparent": "00-x"}),
        (2, "m2", "booking.cancelled", '{"booking_id":"b2"}', {}),
    ]
    assert [m.message_id for m in later] == ["m2"]
    # reading them claimed nothing: the group's claim and the rest are as they were
    await queue.ack(delivery)
    assert await queue.receive([TOPIC], consumer="g") == []
    assert [d.message_id for d in await queue.receive(["booking.cancelled"], consumer="g")] == ["m2"]


_NATS_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from bookline.adapters.queue.nats import NatsQueue

    async def main():
        q = NatsQueue(sys.argv[1], stream=sys.argv[2], visibility_timeout_s=60)
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


async def test_jetstream_consumer_processes_claim_disjoint_messages(nats_backend: Backend):
    producer = nats_backend.make()
    assert isinstance(producer, NatsQueue)
    for i in range(300):
        await producer.publish(TOPIC, {"n": i}, headers={}, message_id=f"m{i:03d}")

    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _NATS_WORKER, NATS_URL, producer.stream, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = [json.loads((await asyncio.wait_for(w.communicate(), 60))[0]) for w in workers]

    claimed = [mid for out in outputs for mid in out]
    assert len(claimed) == len(set(claimed)) == 300
