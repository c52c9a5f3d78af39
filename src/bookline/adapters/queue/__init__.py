"""Message queues: the port and its adapters (a SQLite file for the embedded default, NATS JetStream
for replicas), and :func:`queue_from`, which picks one from the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bookline.adapters.queue.port import Delivery, MessageQueue, QueueClosed, StoredMessage
from bookline.adapters.queue.sqlite import SqliteQueue

if TYPE_CHECKING:
    from bookline.config import Settings

__all__ = ["Delivery", "MessageQueue", "QueueClosed", "SqliteQueue", "StoredMessage", "queue_from"]

NATS_SCHEMES = ("nats://", "tls://")


def queue_from(
    settings: Settings,
    *,
    redelivery_rate: Callable[[], float | None] | None = None,
    client_name: str = "bookline",
) -> MessageQueue:
    """The queue the settings name: NATS JetStream when ``BOOKLINE_QUEUE_URL`` is a ``nats://`` (or
    ``tls://``) URL, in the stream ``<BOOKLINE_QUEUE_STREAM_PREFIX>BOOKLINE``; else the SQLite file
    DATA_DIR/queue.db. No I/O: both connect on first use. ``redelivery_rate``: the fault
    ``queue.redelivery_rate`` (consumers only)."""
    url = settings.queue_url
    if not url:
        return SqliteQueue(
            settings.queue_path,
            visibility_timeout_s=settings.queue_visibility_timeout_s,
            redelivery_rate=redelivery_rate,
        )
    if not url.startswith(NATS_SCHEMES):
        raise ValueError(f"BOOKLINE_QUEUE_URL must be a nats:// URL of NATS JetStream, not {url!r}")
    # imported here: the embedded default does not load the NATS client
    from bookline.adapters.queue.nats import NatsQueue, stream_name

    return NatsQueue(
        url,
        stream=stream_name(settings.queue_stream_prefix),
        visibility_timeout_s=settings.queue_visibility_timeout_s,
        redelivery_rate=redelivery_rate,
        client_name=client_name,
    )
