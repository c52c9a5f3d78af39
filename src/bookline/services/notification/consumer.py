"""The queue consumer of notification-service: a background task that polls the queue for booking
events and turns each into (at most) one e-mail.

Each delivery is processed under a CONSUMER span ``"<topic> process"`` whose parent is the PRODUCER
span found in the message headers, so the e-mail sits in the trace of the booking that caused it.
A delivery is acked once handled (sent or found to be a duplicate), nacked with a backoff when
handling failed, and acked as dropped when its body can never be handled. The fault
``notification.failure_rate`` fails a delivery attempt before the e-mail is sent, to rehearse that.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from bookline.adapters.db import Database
from bookline.adapters.mail import Mailer
from bookline.adapters.queue.port import Delivery, MessageQueue
from bookline.faults import FaultFile, fire, strikes
from bookline.services.notification import handlers
from bookline.services.notification.handlers import (
    KIND_BY_TOPIC,
    InvalidNotice,
    Outcome,
)
from bookline.telemetry import ServiceTelemetry, extract_context

log = logging.getLogger("bookline.notification")

CONSUMER_GROUP = "notification-service"
TOPICS = sorted(KIND_BY_TOPIC)


class InjectedDeliveryFailure(RuntimeError):
    """The fault ``notification.failure_rate`` failed this delivery attempt; nothing was sent."""


class NotificationConsumer:
    def __init__(
        self,
        queue: MessageQueue,
        db: Database,
        mailer: Mailer,
        telemetry: ServiceTelemetry,
        *,
        poll_interval_s: float,
        batch_size: int = 10,
        retry_delay_s: float = 1.0,
        max_retry_delay_s: float = 60.0,
        faults: FaultFile | None = None,
        rng: random.Random | None = None,
        source: handlers.BookingSource,
    ) -> None:
        self.queue = queue
        self.source = source
        self.db = db
        self.mailer = mailer
        self.tracer = telemetry.tracer
        self.delivery_lag = telemetry.meter.create_histogram(
            "notification.delivery_lag_ms",
            unit="ms",
            description="Time from publishing a booking event to its processing by notification-service",
        )
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.retry_delay_s = retry_delay_s
        self.max_retry_delay_s = max_retry_delay_s
        self.faults = faults
        self.rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="notification-consumer")

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Finish the delivery in hand (cancelled after ``timeout_s``; it is redelivered later)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        _done, pending = await asyncio.wait({task}, timeout=timeout_s)
        if pending:
            task.cancel()
            await asyncio.wait({task})

    async def process_once(self) -> int:
        """Claim one batch and process it; returns how many deliveries were claimed."""
        deliveries = await self.queue.receive(TOPICS, consumer=CONSUMER_GROUP, max_messages=self.batch_size)
        for index, delivery in enumerate(deliveries):
            if self._stopping.is_set():
                # give the rest back at once rather than after the visibility timeout
                for left in deliveries[index:]:
                    await self.queue.nack(left, delay_s=0)
                break
            await self.process(delivery)
        return len(deliveries)

    async def process(self, delivery: Delivery) -> None:
        body = delivery.body
        attributes: dict[str, Any] = {
            "messaging.system": self.queue.messaging_system,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.destination.name": delivery.topic,
            "messaging.message.id": delivery.message_id,
        }
        for attribute, key in (
            ("booking.reservation_id", "reservation_id"),
            ("booking.id", "booking_id"),
        ):
            if isinstance(body.get(key), str):
                attributes[attribute] = body[key]
        with self.tracer.start_as_current_span(
            f"{delivery.topic} process",
            context=extract_context(delivery.headers),
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,  # recorded once, below
            set_status_on_exception=False,
        ) as span:
            lag_ms = max(0.0, (time.time() - delivery.published_at) * 1000)
            self.delivery_lag.record(lag_ms, {"messaging.destination.name": delivery.topic})
            try:
                kind = KIND_BY_TOPIC.get(delivery.topic)
                if kind is None:
                    raise InvalidNotice(f"no notification for topic {delivery.topic}")
                notice = handlers.parse_notice(body)
            except InvalidNotice as exc:
                # retrying cannot help: drop it, loudly
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, "invalid booking event dropped"))
                log.error("dropping invalid booking event %s: %s", delivery.message_id, exc)
                await self.queue.ack(delivery)
                return
            try:
                if self._delivery_fails():
                    fire(span, "notification.failure_rate")
                    raise InjectedDeliveryFailure("delivery failed by the fault notification.failure_rate")
                outcome = await handlers.notify(
                    notice,
                    kind,
                    message_id=delivery.message_id,
                    db=self.db,
                    mailer=self.mailer,
                    tracer=self.tracer,
                    source=self.source,
                )
            except Exception as exc:  # noqa: BLE001 - any failure is retried later
                delay = self._retry_delay(delivery.attempt)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"notification failed: {type(exc).__name__}"))
                log.warning(
                    "notification of %s failed (attempt %d), retrying in %.1fs",
                    delivery.message_id,
                    delivery.attempt,
                    delay,
                    exc_info=True,
                )
                await self.queue.nack(delivery, delay_s=delay)
                return
            if outcome is Outcome.DUPLICATE:
                span.set_attribute("notification.duplicate", True)
            await self.queue.ack(delivery)

    def _delivery_fails(self) -> bool:
        rate = self.faults.current().notification.failure_rate if self.faults is not None else None
        return strikes(rate, self.rng)

    def _retry_delay(self, attempt: int) -> float:
        return min(self.max_retry_delay_s, self.retry_delay_s * 2 ** max(0, attempt - 1))

    async def _run(self) -> None:
        while not self._stopping.is_set():
            claimed = 0
            try:
                claimed = await self.process_once()
            except Exception:  # noqa: BLE001 - the consumer outlives a busy queue or database
                log.exception("notification consumer failed; retrying")
            if claimed >= self.batch_size:
                continue  # more may be waiting
            try:
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval_s)
            except TimeoutError:
                pass
