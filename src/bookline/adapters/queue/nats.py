"""The message queue of replicas: NATS JetStream (``BOOKLINE_QUEUE_URL=nats://host:4222``).

Layout on the server:

* one stream, ``<prefix>BOOKLINE`` (``BOOKLINE_QUEUE_STREAM_PREFIX`` keeps test runs apart), file
  storage, limits retention (several consumer groups read the same topic, and a message stays after
  it was acked, as the record of what was sent), subjects ``<stream>.<topic>``;
* publishing sets ``Nats-Msg-Id`` to the message id, so the stream stores one message per id within
  its duplicate window (ten minutes; the SQLite queue deduplicates for ever);
* one durable pull consumer per (consumer group, topic), created on the group's first ``receive`` of
  the topic: explicit acks, ``ack_wait`` = the visibility timeout, no delivery limit, from the start
  of the topic. A group seen for the first time reads the topic from its beginning, as with SQLite.

``receive`` sends one ``no_wait`` pull request per topic and returns what the server has at once.
``Delivery.attempt`` is the consumer's delivery count of the message (``num_delivered``).

Fencing: JetStream settles acks by the message's stream sequence alone; an ack (or nak) of an expired
delivery settles whatever claim is current, including another consumer's newer one (nats-server
``processAckMsg``; checked against the server too). So this adapter settles a delivery only while
its claim is live as this process sees it: not after its ack wait (less a margin, counted from before
the pull request, so earlier than the server's deadline), not when this process has since received
the message again, and once only. An expired claim is therefore never settled here, even when nobody
claimed the message again: it comes back once more (at-least-once; the consumers deduplicate). What
remains is a settlement sent within the margin of the deadline that reaches the server after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from opentelemetry import trace

from bookline.adapters.queue.port import Delivery, QueueClosed, StoredMessage
from bookline.faults import fire, strikes

log = logging.getLogger("bookline.queue.nats")

DEFAULT_STREAM = "BOOKLINE"
MSG_ID = "Nats-Msg-Id"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_TOPIC_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
# the server answers a no_wait pull at once; a request nobody answers (the consumer was deleted) is
# given up after this long
PULL_TIMEOUT_S = 1.0
# the fault queue.redelivery_rate redelivers a message once per (group, message) in this process;
# the oldest marks are forgotten beyond this many
_REDELIVERED_MEMORY = 100_000


@dataclass(eq=False)
class _Claim:
    """One delivery as this process received it (``Delivery.receipt``)."""

    msg: Msg
    seq: int  # the message's stream sequence
    live_until: float  # time.monotonic(): settled only before this


def stream_name(prefix: str = "") -> str:
    """The stream of one Bookline: ``<prefix>BOOKLINE``."""
    name = f"{prefix}{DEFAULT_STREAM}"
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a JetStream stream name (letters, digits, _ and - only)")
    return name


def durable_name(consumer: str, topic: str) -> str:
    """The durable consumer of one consumer group on one topic: readable, and unique per pair."""
    digest = hashlib.sha256(f"{consumer}\0{topic}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", f"{consumer}__{topic}")[:150]
    return f"{readable}-{digest}"


class NatsQueue:
    """A :class:`~bookline.adapters.queue.port.MessageQueue` on a NATS JetStream stream.

    The constructor does no I/O: the connection is opened, and the stream and consumers created, by
    the first call that needs them, inside the running event loop. ``redelivery_rate`` and
    ``redelivery_delay_s`` are the fault ``queue.redelivery_rate`` as in the SQLite queue: an ack it
    strikes is turned into a nak with that delay, once per (group, message) in this process.
    """

    messaging_system = "nats"

    def __init__(
        self,
        url: str,
        *,
        visibility_timeout_s: float,
        stream: str = DEFAULT_STREAM,
        duplicate_window_s: float = 600.0,
        redelivery_rate: Callable[[], float | None] | None = None,
        redelivery_delay_s: float = 0.5,
        rng: random.Random | None = None,
        client_name: str = "bookline",
    ) -> None:
        if visibility_timeout_s <= 0:
            raise ValueError("visibility_timeout_s must be positive")
        if not _NAME.match(stream):
            raise ValueError(f"{stream!r} is not a JetStream stream name (letters, digits, _ and - only)")
        self.url = url
        self.stream = stream
        self.visibility_timeout_s = visibility_timeout_s
        self.duplicate_window_s = duplicate_window_s
        self.redelivery_rate = redelivery_rate
        self.redelivery_delay_s = redelivery_delay_s
        self.client_name = client_name
        self._rng = rng or random.Random()
        # a settlement is sent only this long before the claim's deadline (see the module doc)
        self._settle_margin_s = min(1.0, 0.1 * visibility_timeout_s)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False
        self._stream_ready = False
        self._consumers: set[str] = set()  # durable consumers known to exist
        self._claims: dict[tuple[str, int], _Claim] = {}  # (group, stream seq) -> newest live claim
        self._redelivered: dict[tuple[str, int], None] = {}  # (group, stream seq), insertion-ordered
        self._rotation = 0

    # -- the port -----------------------------------------------------------------------------

    async def publish(self, topic: str, body: dict[str, Any], *, headers: dict[str, str], message_id: str) -> None:
        subject = self._subject(topic)
        payload = json.dumps(body, separators=(",", ":")).encode()
        all_headers = {**headers, MSG_ID: message_id}
        js = await self._jetstream()
        await self._ensure_stream(js)
        try:
            await js.publish(subject, payload, headers=all_headers, stream=self.stream)
        except nats.js.errors.NoStreamResponseError:
            # the stream was deleted under us: create it again, once
            self._forget_server_state()
            await self._ensure_stream(js)
            await js.publish(subject, payload, headers=all_headers, stream=self.stream)

    async def receive(self, topics: list[str], *, consumer: str, max_messages: int = 10) -> list[Delivery]:
        if not topics or max_messages <= 0:
            return []
        topics = sorted(set(topics))
        subjects = {t: self._subject(t) for t in topics}
        js = await self._jetstream()
        await self._ensure_stream(js)
        self._forget_expired_claims()
        # each receive starts with the next topic, so a busy topic cannot starve the others
        start = self._rotation % len(topics)
        self._rotation += 1
        deliveries: list[tuple[int, Delivery]] = []
        for topic in topics[start:] + topics[:start]:
            wanted = max_messages - len(deliveries)
            if wanted <= 0:
                break
            durable = await self._ensure_consumer(js, consumer, topic, subjects[topic])
            # counted from before the request: the server starts its ack wait later than this
            live_until = time.monotonic() + self.visibility_timeout_s - self._settle_margin_s
            msgs = await self._pull(durable, wanted)
            if msgs is None:
                # nobody serves that consumer (deleted, with its stream?): create both again, once
                log.warning("no answer to a pull from %s > %s; creating it again", self.stream, durable)
                self._forget_server_state()
                await self._ensure_stream(js)
                durable = await self._ensure_consumer(js, consumer, topic, subjects[topic])
                live_until = time.monotonic() + self.visibility_timeout_s - self._settle_margin_s
                msgs = await self._pull(durable, wanted) or []
            for msg in msgs:
                deliveries.append(self._claim(msg, topic, consumer, live_until))
        deliveries.sort(key=lambda pair: pair[0])  # stream order = publication order, across topics
        return [delivery for _seq, delivery in deliveries]

    async def ack(self, delivery: Delivery) -> None:
        """Settle a live claim, unless the fault ``queue.redelivery_rate`` strikes: then the message
        is delivered once more, ``redelivery_delay_s`` later, and the event ``fault_injected`` goes on
        the current span (the consumer's process span)."""
        redeliver = strikes(self.redelivery_rate() if self.redelivery_rate else None, self._rng)
        claim = self._take_live_claim(delivery)
        if claim is None:
            return
        key = (delivery.consumer, claim.seq)
        if redeliver and key not in self._redelivered:
            self._remember_redelivered(key)
            await self._nak(claim.msg, self.redelivery_delay_s)
            fire(trace.get_current_span(), "queue.redelivery_rate")
            return
        try:
            await claim.msg.ack_sync(timeout=PULL_TIMEOUT_S * 5)
        except nats.errors.TimeoutError:
            # the server may or may not have it: at worst the message comes back (at-least-once)
            log.warning("no answer to the ack of %s (%s); it may be delivered again", delivery.message_id, self.stream)

    async def nack(self, delivery: Delivery, *, delay_s: float) -> None:
        claim = self._take_live_claim(delivery)
        if claim is not None:
            await self._nak(claim.msg, delay_s)

    async def close(self) -> None:
        self._closed = True
        nc, self._nc, self._js = self._nc, None, None
        self._claims.clear()
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except Exception:  # noqa: BLE001 - closing anyway
                log.warning("draining the NATS connection failed; closing it", exc_info=True)
                await nc.close()

    # -- reads for the admin scans ------------------------------------------------------------

    async def stored_messages(self, since: float | None = None) -> AsyncIterator[StoredMessage]:
        """Every message of the stream (with ``since``: published at or after it), oldest first,
        read through an ephemeral consumer without acks: the consumer groups are not touched."""
        js = await self._jetstream()
        try:
            await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            return
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,  # since is applied here: nats-py 2.7 cannot send a start time
            filter_subject=f"{self.stream}.>",
            inactive_threshold=60.0,
            mem_storage=True,
        )
        info = await js.add_consumer(self.stream, config)
        try:
            while batch := await self._pull(info.name, 256):
                for msg in batch:
                    published_at = msg.metadata.timestamp.timestamp()
                    if since is not None and published_at < since:
                        continue
                    yield StoredMessage(
                        seq=msg.metadata.sequence.stream,
                        message_id=(msg.headers or {}).get(MSG_ID, ""),
                        topic=msg.subject[len(self.stream) + 1 :],
                        body=msg.data.decode(errors="replace"),
                        headers=_user_headers(msg.headers),
                        published_at=published_at,
                    )
        finally:
            try:
                await js.delete_consumer(self.stream, info.name)
            except nats.js.errors.NotFoundError:
                pass

    # -- claims ---------------------------------------------------------------------------------

    def _claim(self, msg: Msg, topic: str, consumer: str, live_until: float) -> tuple[int, Delivery]:
        meta = msg.metadata
        seq = meta.sequence.stream
        message_id = (msg.headers or {}).get(MSG_ID) or f"{self.stream}:{seq}"
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # not a message of Bookline's: the consumer drops it as invalid (an empty body)
            log.error("message %s on %s is not a JSON object", message_id, msg.subject)
            body = {}
        # the newest delivery of a message in this process is the only one it may settle
        claim = self._claims[(consumer, seq)] = _Claim(msg, seq, live_until)
        delivery = Delivery(
            message_id=message_id,
            topic=topic,
            body=body,
            headers=_user_headers(msg.headers),
            published_at=meta.timestamp.timestamp(),
            attempt=meta.num_delivered,
            consumer=consumer,
            receipt=claim,
        )
        return seq, delivery

    def _take_live_claim(self, delivery: Delivery) -> _Claim | None:
        """The claim behind ``delivery`` if it may still be settled (then it is settled: taken out)."""
        claim = delivery.receipt
        key = (delivery.consumer, claim.seq) if isinstance(claim, _Claim) else None
        if key is None or self._claims.get(key) is not claim:
            log.debug("not settling %s attempt %d: not the newest claim here", delivery.message_id, delivery.attempt)
            return None
        del self._claims[key]
        if time.monotonic() > claim.live_until:
            log.info(
                "not settling %s attempt %d: its claim expired; it will be delivered again",
                delivery.message_id,
                delivery.attempt,
            )
            return None
        return claim

    def _forget_expired_claims(self) -> None:
        now = time.monotonic()
        for key in [k for k, c in self._claims.items() if c.live_until < now]:
            del self._claims[key]

    def _remember_redelivered(self, key: tuple[str, int]) -> None:
        self._redelivered[key] = None
        while len(self._redelivered) > _REDELIVERED_MEMORY:
            del self._redelivered[next(iter(self._redelivered))]

    async def _nak(self, msg: Msg, delay_s: float) -> None:
        """A nak the server has processed when this returns (nats-py's ``nak`` does not wait), so a
        ``receive`` right after it sees the message again."""
        payload = b"-NAK"
        if delay_s > 0:
            payload += b" " + json.dumps({"delay": int(delay_s * 1_000_000_000)}).encode()
        nc = await self._connection()
        try:
            await nc.request(msg.reply, payload, timeout=PULL_TIMEOUT_S * 5)
        except nats.errors.TimeoutError:
            log.warning("no answer to the nak of %s; it comes back after its ack wait", msg.reply)

    # -- the server's objects -------------------------------------------------------------------

    def _subject(self, topic: str) -> str:
        if not topic or not all(_TOPIC_TOKEN.match(token) for token in topic.split(".")):
            raise ValueError(f"{topic!r} cannot be a NATS subject (dot-separated letters, digits, _ and -)")
        return f"{self.stream}.{topic}"

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        if self._stream_ready:
            return
        config = StreamConfig(
            name=self.stream,
            description="Bookline's booking events",
            subjects=[f"{self.stream}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            duplicate_window=self.duplicate_window_s,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # the name is taken by a stream configured otherwise
                raise
            info = await js.stream_info(self.stream)
            log.warning(
                "the JetStream stream %s exists with another configuration (subjects %s, duplicate window %ss);"
                " using it as it is",
                self.stream,
                info.config.subjects,
                info.config.duplicate_window,
            )
        self._stream_ready = True

    async def _ensure_consumer(self, js: JetStreamContext, consumer: str, topic: str, subject: str) -> str:
        durable = durable_name(consumer, topic)
        if durable in self._consumers:
            return durable
        config = ConsumerConfig(
            durable_name=durable,
            description=f"Bookline consumer group {consumer} on {topic}",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.visibility_timeout_s,
            max_deliver=-1,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=subject,
        )
        # creating a durable consumer that exists is a no-op (or an update of its ack wait)
        await js.add_consumer(self.stream, config)
        self._consumers.add(durable)
        return durable

    def _forget_server_state(self) -> None:
        self._stream_ready = False
        self._consumers.clear()

    async def _pull(self, consumer: str, batch: int) -> list[Msg] | None:
        """One ``no_wait`` pull request: the messages the consumer has for us now, at most ``batch``;
        None when nothing answered (no such consumer)."""
        nc = await self._connection()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        msgs: list[Msg] = []
        answered = False
        try:
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{consumer}",
                json.dumps({"batch": batch, "no_wait": True}).encode(),
                reply=inbox,
            )
            deadline = time.monotonic() + PULL_TIMEOUT_S
            while len(msgs) < batch:
                try:
                    msg = await sub.next_msg(timeout=max(0.001, deadline - time.monotonic()))
                except nats.errors.TimeoutError:
                    break
                answered = True
                status = JetStreamContext.is_status_msg(msg)
                if status is None:
                    msgs.append(msg)
                    continue
                # 404 no messages, 408 the request ended with fewer than asked; 409 and others end it
                if status not in ("404", "408"):
                    log.warning("pull from %s > %s answered %s %s", self.stream, consumer, status, msg.headers)
                break
        finally:
            await sub.unsubscribe()
        return msgs if answered else None

    # -- the connection -------------------------------------------------------------------------

    async def _connection(self) -> NatsClient:
        await self._jetstream()
        assert self._nc is not None
        return self._nc

    async def _jetstream(self) -> JetStreamContext:
        if self._closed:
            raise QueueClosed(f"the queue {self.stream} at {self.url} is closed")
        if self._js is not None:
            return self._js
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._js is None:
                nc = await nats.connect(
                    self.url,
                    name=self.client_name,
                    connect_timeout=5,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    drain_timeout=5,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                if self._closed:
                    await nc.close()
                    raise QueueClosed(f"the queue {self.stream} at {self.url} is closed")
                self._nc, self._js = nc, nc.jetstream(timeout=5)
        assert self._js is not None
        return self._js

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS connection error (%s): %s", self.url, exc)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            log.warning("disconnected from NATS (%s); reconnecting", self.url)

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS (%s)", self.url)


def _user_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """The headers the publisher gave (the trace context), without the ones of NATS."""
    return {k: v for k, v in (headers or {}).items() if not k.startswith("Nats-")}
