"""The port every message queue adapter of Bookline implements (SQLite file embedded, NATS JetStream
for replicas).

Delivery is at-least-once: a consumer group claims a message for a visibility timeout, and a message
it does not ack in time becomes visible again. Consumers therefore make their effects idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class QueueClosed(RuntimeError):
    """The queue was closed; it takes no more calls."""


@dataclass(frozen=True)
class Delivery:
    """One claim of one message by one consumer group.

    ``attempt`` counts the deliveries of this message to this group (1 on the first); a redelivery
    after the visibility timeout, a nack or the fault ``queue.redelivery_rate`` counts one more.

    ``ack``/``nack`` settle a delivery only while its claim is the group's newest: once the claim
    expired and the message was claimed again, settling the old delivery changes nothing (the
    newer claim stays the newer holder's). Every adapter keeps that promise between consumers, in
    one process or in several; an adapter may refuse to settle an expired claim even when nobody
    claimed the message again (NATS JetStream does: the message then comes back once more).
    """

    message_id: str
    topic: str
    body: dict[str, Any]
    headers: dict[str, str]
    published_at: float  # unix seconds
    attempt: int
    consumer: str  # the consumer group that holds the claim
    # the adapter's own handle of this claim (NATS: the message as delivered); opaque to callers
    receipt: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class StoredMessage:
    """A message as the queue keeps it, for the read-only scans of the admin API."""

    seq: int  # the queue's order of publication
    message_id: str
    topic: str
    body: str  # as stored (JSON text)
    headers: dict[str, str]
    published_at: float  # unix seconds


class MessageQueue(Protocol):
    # ``messaging.system`` of the publish and process spans around this queue (TELEMETRY.md):
    # ``bookline-sqlite-queue`` for the embedded SQLite file, ``nats`` for NATS JetStream
    messaging_system: str

    async def publish(self, topic: str, body: dict[str, Any], *, headers: dict[str, str], message_id: str) -> None:
        """Store a message; publishing the same ``message_id`` again stores nothing new (NATS
        JetStream: within its duplicate window, ten minutes by default)."""
        ...

    async def receive(self, topics: list[str], *, consumer: str, max_messages: int = 10) -> list[Delivery]:
        """Claim up to ``max_messages`` visible messages of ``topics`` for the consumer group.

        Returns at once (possibly an empty list): the caller polls.
        """
        ...

    async def ack(self, delivery: Delivery) -> None:
        """Settle a delivery: the group never receives this message again."""
        ...

    async def nack(self, delivery: Delivery, *, delay_s: float) -> None:
        """Give a delivery back: it becomes visible to the group again after ``delay_s``."""
        ...

    async def close(self) -> None: ...
