"""The port every message queue adapter of Bookline implements (SQLite file embedded, NATS scale-out).

Delivery is at-least-once: a consumer group claims a message for a visibility timeout, and a message
it does not ack in time becomes visible again. Consumers therefore make their effects idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

# ``messaging.system`` of the publish and process spans around this queue (TELEMETRY.md)
MESSAGING_SYSTEM = "bookline-sqlite-queue"


@dataclass(frozen=True)
class Delivery:
    """One claim of one message by one consumer group.

    ``attempt`` counts the claims of this message by this group (1 on the first delivery); it also
    fences ``ack``/``nack``: a consumer whose claim expired and was taken over cannot settle the
    newer claim.
    """

    message_id: str
    topic: str
    body: dict[str, Any]
    headers: dict[str, str]
    published_at: float  # unix seconds
    attempt: int
    consumer: str  # the consumer group that holds the claim


class MessageQueue(Protocol):
    async def publish(self, topic: str, body: dict[str, Any], *, headers: dict[str, str], message_id: str) -> None:
        """Store a message; publishing the same ``message_id`` again stores nothing new."""
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
