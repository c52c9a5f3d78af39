"""The notification reconciler of confirmation-service: every booking event it published must end in
an e-mail, whatever happened to the message on the way.

The queue retries a failed delivery with a backoff, so almost every event arrives by itself. What
the queue cannot see is a message that is gone: a broker that lost it, a queue file restored from a
backup, a consumer that acked and crashed before sending. So, once a published event is
``reconcile_settle_after_s`` old, the reconciler asks notification-service (its admin read API)
whether the e-mail for that booking and kind was sent. If it was, the event is marked delivered; if
not, the same event is written to the outbox again under a new id, in a ``confirmation.resend_notification``
span linked to the booking's trace, and the relay publishes it like any other. notification-service
sends at most one e-mail per booking and kind, so a resend can never send twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Link, Tracer, get_current_span
from sqlalchemy import Integer, bindparam, exists, insert, select
from sqlalchemy.exc import IntegrityError

from bookline.adapters.db import Database
from bookline.services.common.outbox import add_to_outbox
from bookline.services.common.periodic import Periodic
from bookline.services.confirmation.tables import delivery_checks, outbox
from bookline.services.notification.client import NotificationClient
from bookline.telemetry import extract_context

log = logging.getLogger("bookline.confirmation.reconcile")

KIND_OF_TOPIC = {"booking.confirmed": "confirmed", "booking.cancelled": "cancelled"}

SELECT_UNCHECKED = (
    select(outbox.c.event_id, outbox.c.topic, outbox.c.payload, outbox.c.headers, outbox.c.created_at)
    .where(
        outbox.c.published_at.is_not(None),
        outbox.c.created_at < bindparam("settled_before"),
        ~exists().where(delivery_checks.c.event_id == outbox.c.event_id),
    )
    .order_by(outbox.c.created_at)
    .limit(bindparam("limit", type_=Integer))
)
INSERT_CHECK = insert(delivery_checks)


@dataclass(frozen=True)
class PublishedEvent:
    event_id: str
    topic: str
    payload: dict[str, Any]
    headers: dict[str, str]
    created_at: float

    @property
    def delivery(self) -> tuple[str, str]:
        """The (booking, kind) notification-service keeps one e-mail for."""
        return str(self.payload.get("booking_id")), KIND_OF_TOPIC.get(self.topic, self.topic)


class NotificationReconciler:
    def __init__(
        self,
        db: Database,
        notifications: NotificationClient,
        tracer: Tracer,
        *,
        interval_s: float,
        settle_after_s: float,
        batch_size: int = 200,
    ) -> None:
        self.db = db
        self.notifications = notifications
        self.tracer = tracer
        self.settle_after_s = settle_after_s
        self.batch_size = batch_size
        self.job = Periodic("notification-reconciler", interval_s, self.reconcile_once)

    async def reconcile_once(self) -> int:
        """Check one batch of published events; returns how many had to be sent again."""
        with suppress_instrumentation():
            events = await self._unchecked()
            if not events:
                return 0
            # one read of what was sent covers the whole batch (an e-mail is sent after its event)
            sent = await self.notifications.sent_since(min(e.created_at for e in events))
        delivered = {(str(n["booking_id"]), str(n["kind"])) for n in sent}
        resent = 0
        for event in events:
            if event.delivery in delivered:
                await self._mark(event, "delivered")
            else:
                await self._resend(event)
                resent += 1
        return resent

    async def _unchecked(self) -> list[PublishedEvent]:
        params = {"settled_before": time.time() - self.settle_after_s, "limit": self.batch_size}
        async with self.db.read() as conn:
            rows = (await conn.execute(SELECT_UNCHECKED, params)).all()
        return [
            PublishedEvent(r.event_id, r.topic, json.loads(r.payload), json.loads(r.headers), r.created_at)
            for r in rows
        ]

    async def _mark(self, event: PublishedEvent, status: str) -> None:
        with suppress_instrumentation(), contextlib.suppress(IntegrityError):
            # IntegrityError: a reconciler of another replica checked it first (the primary key decides)
            async with self.db.write() as conn:
                await conn.execute(
                    INSERT_CHECK, {"event_id": event.event_id, "status": status, "checked_at": time.time()}
                )

    async def _resend(self, event: PublishedEvent) -> None:
        booking_id, kind = event.delivery
        original = get_current_span(extract_context(event.headers)).get_span_context()
        links = [Link(original)] if original.is_valid else []
        with self.tracer.start_as_current_span("confirmation.resend_notification", links=links) as span:
            span.set_attribute("booking.id", booking_id)
            span.set_attribute("booking.reservation_id", str(event.payload.get("reservation_id")))
            span.set_attribute("notification.kind", kind)
            try:
                async with self.db.write() as conn:
                    # the new event carries this span's context: its delivery continues this trace; the
                    # check's primary key lets one replica's reconciler write it, in one transaction
                    new_id = await add_to_outbox(conn, outbox, topic=event.topic, payload=event.payload)
                    await conn.execute(
                        INSERT_CHECK, {"event_id": event.event_id, "status": "resent", "checked_at": time.time()}
                    )
            except IntegrityError:
                span.set_attribute("confirmation.resent_by_another_replica", True)
                return
            span.set_attribute("messaging.message.id", new_id)
        log.warning("no %s e-mail was sent for booking %s: its event was written again", kind, booking_id)
