"""The transactional outbox: an event is written in the same database transaction as the change it
announces, and a relay publishes it to the queue afterwards.

The row stores the W3C trace context of the transaction that wrote it, so the relay's PRODUCER span
(``"<topic> publish"``) continues the trace of the request that caused the event, however late it
runs. Delivery to the queue is at-least-once: a crash between publishing and marking the row only
republishes the same message id, which the queue stores once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind
from sqlalchemy import (
    Column,
    Float,
    Index,
    Insert,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    Update,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from bookline.adapters.db import Database
from bookline.adapters.queue.port import MessageQueue
from bookline.telemetry import ServiceTelemetry, extract_context, inject_context

log = logging.getLogger("bookline.outbox")


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table in a service's metadata (its migration creates the same table)."""
    return Table(
        "outbox",
        metadata,
        Column("event_id", String(64), primary_key=True),
        Column("topic", String(100), nullable=False),
        Column("payload", Text, nullable=False),  # JSON
        Column("headers", Text, nullable=False),  # JSON: the trace context of the writer
        Column("created_at", Float, nullable=False),  # unix seconds
        Column("published_at", Float, nullable=True),  # NULL until relayed
        # which relay took the row, until when (replicas: one relay publishes a row at a time)
        Column("claimed_by", String(64), nullable=True),
        Column("claimed_until", Float, nullable=True),
        Index("ix_outbox_published_at", "published_at"),
    )


@dataclass(frozen=True)
class _Statements:
    insert_event: Insert
    select_unpublished: Select
    claim_unpublished: Update
    release_claims: Update
    mark_published: Update


@functools.cache
def _statements(table: Table) -> _Statements:
    """The statements on one outbox table, built once: constructing them on every call cost more
    CPU than running them."""
    # unpublished, and nobody's (any more), or this relay's own
    claimable = and_(
        table.c.published_at.is_(None),
        or_(
            table.c.claimed_until.is_(None),
            table.c.claimed_until < bindparam("now"),
            table.c.claimed_by == bindparam("owner"),
        ),
    )
    # on PostgreSQL a relay of another replica skips the rows this one is claiming (SQLite: one writer)
    batch = (
        select(table.c.event_id)
        .where(claimable)
        .order_by(table.c.created_at, table.c.event_id)
        .limit(bindparam("batch_size", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    return _Statements(
        insert_event=insert(table),
        # whether there is anything to claim: an idle poll reads, it does not write
        select_unpublished=select(table.c.event_id).where(claimable).limit(1),
        claim_unpublished=update(table)
        .where(table.c.event_id.in_(batch.scalar_subquery()))
        .values(claimed_by=bindparam("owner"), claimed_until=bindparam("until"))
        .returning(table.c.event_id, table.c.topic, table.c.payload, table.c.headers, table.c.created_at),
        release_claims=update(table)
        .where(table.c.claimed_by == bindparam("owner"), table.c.published_at.is_(None))
        .values(claimed_until=None),
        # the event id is passed as ``event``: SQLAlchemy reserves column names for the SET clause
        mark_published=update(table)
        .where(table.c.event_id == bindparam("event"), table.c.published_at.is_(None))
        .values(published_at=bindparam("now")),
    )


async def add_to_outbox(
    conn: AsyncConnection,
    table: Table,
    *,
    topic: str,
    payload: dict[str, Any],
    event_id: str | None = None,
) -> str:
    """Write an event in the caller's transaction, with the current trace context; returns its id."""
    event_id = event_id or str(uuid.uuid4())
    await conn.execute(
        _statements(table).insert_event,
        {
            "event_id": event_id,
            "topic": topic,
            "payload": json.dumps(payload, separators=(",", ":")),
            "headers": json.dumps(inject_context({}), separators=(",", ":")),
            "created_at": time.time(),
            "published_at": None,
        },
    )
    return event_id


async def _stop_task(task: asyncio.Task[None], timeout_s: float) -> None:
    """Let a background loop finish its current step, cancelling it after ``timeout_s``."""
    _done, pending = await asyncio.wait({task}, timeout=timeout_s)
    if pending:
        task.cancel()  # an interrupted step is done again later: every step is idempotent
        await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s ended with an error", task.get_name(), exc_info=task.exception())


class OutboxRelay:
    """Publishes unpublished outbox rows to the queue, oldest first, from a background task."""

    def __init__(
        self,
        db: Database,
        table: Table,
        queue: MessageQueue,
        telemetry: ServiceTelemetry,
        *,
        poll_interval_s: float,
        batch_size: int = 100,
        owner: str = "",
        claim_s: float = 30.0,
    ) -> None:
        """``owner``: this replica; ``claim_s``: how long a claimed row is this relay's to publish
        (then another relay may take it; the queue keeps one message per id either way)."""
        self.owner = owner
        self.claim_s = claim_s
        self.db = db
        self.table = table
        self.queue = queue
        self.tracer = telemetry.tracer
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, timeout_s: float = 2.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        await _stop_task(task, timeout_s)

    async def relay_once(self) -> int:
        """Claim one batch of unpublished rows and publish them; returns how many were published.

        With replicas, each relay claims its own rows (``claim_s``), so one event is published by one
        relay. Stops at the first row that fails (it is retried once its claim runs out), so events a
        relay publishes leave in the order they were written.
        """
        statements = _statements(self.table)
        now = time.time()
        # an idle poll every few hundred ms must not leave a root trace of its SELECT each time
        with suppress_instrumentation():
            async with self.db.read() as conn:
                found = await conn.execute(statements.select_unpublished, {"now": now, "owner": self.owner})
                if found.first() is None:
                    return 0
            async with self.db.write() as conn:
                claimed = await conn.execute(
                    statements.claim_unpublished,
                    {"now": now, "batch_size": self.batch_size, "owner": self.owner, "until": now + self.claim_s},
                )
                rows = sorted(claimed.all(), key=lambda r: (r.created_at, r.event_id))
        published = 0
        try:
            for row in rows:
                await self._publish(row.event_id, row.topic, json.loads(row.payload), json.loads(row.headers))
                published += 1
        except BaseException:
            # what this relay could not publish is anyone's again at once, not when its claim runs out
            with suppress_instrumentation():
                async with self.db.write() as conn:
                    await conn.execute(statements.release_claims, {"owner": self.owner})
            raise
        return published

    async def _publish(
        self, event_id: str, topic: str, payload: dict[str, Any], stored_headers: dict[str, str]
    ) -> None:
        attributes: dict[str, Any] = {
            "messaging.system": self.queue.messaging_system,
            "messaging.operation.name": "publish",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": event_id,
        }
        if payload.get("reservation_id") is not None:
            attributes["booking.reservation_id"] = str(payload["reservation_id"])
        with self.tracer.start_as_current_span(
            f"{topic} publish",
            context=extract_context(stored_headers),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ):
            # the message carries the PRODUCER span, so the consumer's span is its child
            headers = inject_context({})
            await self.queue.publish(topic, payload, headers=headers, message_id=event_id)
            async with self.db.write() as conn:
                await conn.execute(_statements(self.table).mark_published, {"event": event_id, "now": time.time()})

    async def _run(self) -> None:
        while not self._stopping.is_set():
            published = 0
            try:
                published = await self.relay_once()
            except Exception:  # noqa: BLE001 - the relay outlives a busy database or queue
                log.exception("outbox relay failed; retrying")
            if published >= self.batch_size:
                continue  # more are waiting
            try:
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval_s)
            except TimeoutError:
                pass
