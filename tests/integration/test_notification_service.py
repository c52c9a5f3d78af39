"""notification-service in-process: booking events from the queue become one e-mail per (booking, kind),
in the trace of the booking that caused them."""

from __future__ import annotations

import asyncio
import email
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bookline.adapters.db import Database
from bookline.adapters.mail import EmlMailer
from bookline.adapters.migrations import script_location, upgrade
from bookline.adapters.queue import SqliteQueue
from bookline.config import Settings
from bookline.domain.money import Money
from bookline.services import notification
from bookline.services.notification.api import build_app
from bookline.services.notification.consumer import NotificationConsumer
from bookline.services.notification.templates import format_money
from bookline.telemetry import ServiceTelemetry, inject_context, setup_telemetry
from support.booking import bk_id, rsv_id
from support.postgres import PG_URL, require_postgres_async

ADMIN_TOKEN = "notification-test-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BK_1 = bk_id("1")


GUEST = {"name": "Ana Lopez", "email": "ana.lopez@example.com", "phone": "+351912345678"}
PROPERTY = {
    "property_id": "prop-kyoto-1",
    "name": "Hotel Azul Kyoto 1",
    "address": "12 Sanjo-dori, 604-8004 Kyoto, Japan",
    "time_zone": "Asia/Tokyo",
    "rooms": [{"room_id": "prop-kyoto-1-r2", "name": "Double 002", "room_type": "double", "capacity": 2}],
}


def booking_event(booking_id: str = BK_1) -> dict[str, Any]:
    """A booking event as confirmation-service publishes it: ids only."""
    return {"booking_id": booking_id, "reservation_id": rsv_id(booking_id)}


def notice_of(booking_id: str, **overrides: Any) -> dict[str, Any]:
    """What confirmation-service answers notification-service about a booking."""
    return {
        "booking_id": booking_id,
        "reservation_id": rsv_id(booking_id),
        "confirmation_code": "BKL-7K3M-Q9XZ",
        "status": "confirmed",
        "user_id": "u_42",
        "property_id": "prop-kyoto-1",
        "room_id": "prop-kyoto-1-r2",
        "room_type": "double",
        "check_in": "2030-03-14",
        "check_out": "2030-03-17",
        "total_minor": 123450,
        "currency": "EUR",
        "guest": GUEST,
        "nights": [{"night": f"2030-03-{d}", "amount_minor": 38000} for d in (14, 15, 16)],
        "taxes_minor": 9450,
        "cancellation": {
            "free_cancellation_hours": 48,
            "free_cancellation_until": "2030-03-12T06:00:00+00:00",
            "time_zone": "Asia/Tokyo",
            "penalty_minor": 41040,
            "currency": "EUR",
        },
        "refund_minor": None,
        "cancellation_penalty_minor": None,
    } | overrides


class Source:
    """The edge of notification-service: what confirmation-service and availability-service answer."""

    def __init__(self) -> None:
        self.notices: dict[str, dict[str, Any]] = {}
        self.asked: list[str] = []

    def add(self, booking_id: str, **overrides: Any) -> None:
        self.notices[rsv_id(booking_id)] = notice_of(booking_id, **overrides)

    async def notice(self, reservation_id: str) -> dict[str, Any]:
        self.asked.append(reservation_id)
        return self.notices[reservation_id]

    async def get_property(self, property_id: str) -> dict[str, Any]:
        assert property_id == PROPERTY["property_id"]
        return PROPERTY


@dataclass
class Service:
    settings: Settings
    telemetry: ServiceTelemetry
    exporter: InMemorySpanExporter
    metrics: InMemoryMetricReader
    client: httpx.AsyncClient
    producer: SqliteQueue
    source: Source

    async def publish(
        self, topic: str, body: dict[str, Any], *, message_id: str | None = None
    ) -> tuple[str, ReadableSpan]:
        """Publish as a producer would, from inside a span of the test; returns the id and span."""
        message_id = message_id or str(uuid4())
        if "booking_id" in body and rsv_id(body["booking_id"]) not in self.source.notices:
            self.source.add(body["booking_id"])
        with self.telemetry.tracer.start_as_current_span("test.produce") as span:
            headers = inject_context({})
        await self.producer.publish(topic, body, headers=headers, message_id=message_id)
        return message_id, span  # type: ignore[return-value]

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    def mails(self) -> list[Path]:
        mail_dir = self.settings.mail_dir
        return sorted(mail_dir.glob("*.eml")) if mail_dir.exists() else []


async def eventually(check: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Service]:
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry("notification-service", settings, span_exporter=exporter, metric_readers=[reader])
    source = Source()
    app = build_app(settings, telemetry, source=source)
    producer = SqliteQueue(settings.queue_path, visibility_timeout_s=30)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://notification") as client:
                yield Service(settings, telemetry, exporter, reader, client, producer, source)
    finally:
        await producer.close()
        telemetry.shutdown()


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    settings = Settings(data_dir=tmp_path, queue_poll_interval_s=0.02, admin_token=ADMIN_TOKEN)
    async with running_service(settings) as svc:
        yield svc


def queue_states(settings: Settings) -> dict[str, str]:
    with sqlite3.connect(settings.queue_path) as conn:
        return dict(
            conn.execute("SELECT message_id, state FROM deliveries WHERE consumer = 'notification-service'").fetchall()
        )


async def test_health_names_the_service(service: Service):
    response = await service.client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["service"] == "notification-service"


async def test_confirmed_booking_sends_one_email_in_the_trace_of_the_producer(service: Service):
    message_id, producer_span = await service.publish("booking.confirmed", booking_event(bk_id("1")))

    eml = service.settings.mail_dir / f"{BK_1}-confirmed.eml"
    await eventually(eml.exists)
    [process] = await eventually(lambda: service.spans("booking.confirmed process"))

    producer_ctx = producer_span.get_span_context()
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == producer_ctx.trace_id
    assert process.parent is not None and process.parent.span_id == producer_ctx.span_id
    assert dict(process.attributes) == {
        "messaging.system": "bookline-sqlite-queue",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": "booking.confirmed",
        "messaging.message.id": message_id,
        "booking.reservation_id": rsv_id(BK_1),
        "booking.id": bk_id("1"),
    }
    assert process.status.status_code is StatusCode.UNSET

    [send] = service.spans("notification.send_email")
    assert send.kind is SpanKind.CLIENT
    assert send.parent is not None and send.parent.span_id == process.context.span_id
    assert dict(send.attributes) == {"notification.kind": "confirmed", "booking.id": bk_id("1")}

    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["From"] == "Bookline <bookings@bookline.example>"
    assert message["To"].addresses[0].addr_spec == GUEST["email"]
    assert message["Subject"] == "Your booking BKL-7K3M-Q9XZ is confirmed"
    text = message.get_body(("plain",)).get_content()
    assert "Thu 14 Mar 2030" in text and "Sun 17 Mar 2030" in text
    assert PROPERTY["name"] in text and PROPERTY["address"] in text and "Double 002" in text
    assert "1,234.50 EUR" in text and "380.00 EUR" in text
    assert service.source.asked == [rsv_id(BK_1)]

    response = await service.client.get("/admin/notifications", headers=ADMIN)
    [row] = [n for n in response.json()["notifications"] if n["booking_id"] == BK_1]
    assert row["booking_id"] == bk_id("1") and row["kind"] == "confirmed"
    assert row["message_id"] == message_id
    assert queue_states(service.settings) == {message_id: "acked"}


async def test_delivery_lag_is_recorded_per_destination(service: Service):
    await service.publish("booking.confirmed", booking_event(bk_id("lag")))
    await eventually(lambda: service.spans("booking.confirmed process"))

    data = service.metrics.get_metrics_data()
    points = [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "notification.delivery_lag_ms"
        for point in metric.data.data_points
    ]
    [point] = points
    assert point.count == 1
    assert dict(point.attributes) == {"messaging.destination.name": "booking.confirmed"}
    assert 0 <= point.sum < 5_000


async def test_second_message_for_the_same_booking_and_kind_sends_no_second_email(
    service: Service,
):
    first_id, _ = await service.publish("booking.confirmed", booking_event(bk_id("2")))
    await eventually(lambda: service.spans("booking.confirmed process"))

    second_id, _ = await service.publish("booking.confirmed", booking_event(bk_id("2")))
    processes = await eventually(lambda: (s := service.spans("booking.confirmed process")) and len(s) == 2 and s)

    duplicate = next(s for s in processes if s.attributes["messaging.message.id"] == second_id)
    assert duplicate.attributes["notification.duplicate"] is True
    assert len(service.spans("notification.send_email")) == 1
    assert [p.name for p in service.mails()] == [f"{bk_id('2')}-confirmed.eml"]
    response = await service.client.get("/admin/notifications", headers=ADMIN)
    assert [r["message_id"] for r in response.json()["notifications"]] == [first_id]
    # the duplicate is settled, not left to come back
    assert queue_states(service.settings) == {first_id: "acked", second_id: "acked"}


async def test_cancellation_is_a_second_kind_with_its_own_email(service: Service):
    jpy = {"currency": "JPY", "total_minor": 45000, "taxes_minor": 0, "cancellation": None,
           "nights": [{"night": f"2030-03-{d}", "amount_minor": 15000} for d in (14, 15, 16)]}  # fmt: skip
    service.source.add(bk_id("3"), **jpy, refund_minor=30000, cancellation_penalty_minor=15000)
    await service.publish("booking.confirmed", booking_event(bk_id("3")))
    await service.publish("booking.cancelled", booking_event(bk_id("3")))

    cancelled = service.settings.mail_dir / f"{bk_id('3')}-cancelled.eml"
    await eventually(lambda: cancelled.exists() and len(service.spans("notification.send_email")) == 2)

    message = email.message_from_bytes(cancelled.read_bytes(), policy=policy.default)
    assert message["Subject"] == "Your booking BKL-7K3M-Q9XZ is cancelled"
    text = message.get_body(("plain",)).get_content()
    assert "45,000 JPY" in text and "30,000 JPY" in text and "15,000 JPY" in text
    [process] = await eventually(lambda: service.spans("booking.cancelled process"))
    assert process.attributes["messaging.destination.name"] == "booking.cancelled"
    kinds = sorted(s.attributes["notification.kind"] for s in service.spans("notification.send_email"))
    assert kinds == ["cancelled", "confirmed"]
    response = await service.client.get("/admin/notifications", headers=ADMIN)
    assert sorted(r["kind"] for r in response.json()["notifications"]) == ["cancelled", "confirmed"]


async def test_recipient_address_appears_in_no_span_and_no_log_row(service: Service):
    await service.publish("booking.confirmed", booking_event(bk_id("4")))
    await eventually(lambda: service.spans("booking.confirmed process"))

    for span in service.exporter.get_finished_spans():
        for value in span.attributes.values():
            assert "@" not in str(value) and GUEST["name"] not in str(value) and GUEST["phone"] not in str(value)
    with sqlite3.connect(service.settings.data_dir / "notification.db") as conn:
        rows = conn.execute("SELECT * FROM sent_notifications").fetchall()
    assert rows and not any("@" in str(value) for row in rows for value in row)


async def test_an_event_that_can_never_be_notified_is_dropped_with_an_error_span(service: Service):
    message_id, _ = await service.publish("booking.confirmed", {"booking_id": bk_id("5")})

    [process] = await eventually(lambda: service.spans("booking.confirmed process"))

    assert process.status.status_code is StatusCode.ERROR
    assert [e.name for e in process.events] == ["exception"]
    assert service.mails() == []
    assert queue_states(service.settings) == {message_id: "acked"}


async def test_shutdown_stops_the_consumer_promptly(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, queue_poll_interval_s=5.0)
    started = None
    async with running_service(settings):
        started = time.monotonic()
    assert time.monotonic() - started < 2.0


# --- the consumer with a mailer that fails -------------------------------------------------


class FlakyMailer:
    """Fails the first ``failures`` sends, then writes .eml files."""

    def __init__(self, mail_dir: Path, failures: int) -> None:
        self.inner = EmlMailer(mail_dir)
        self.failures = failures

    async def send(self, **kwargs: Any) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("mail relay unavailable")
        return await self.inner.send(**kwargs)


async def test_a_failed_send_is_nacked_and_retried_until_sent(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("notification-service", settings, span_exporter=exporter)
    db = Database(settings.database_url_of("notification-service"))
    queue = SqliteQueue(settings.queue_path, visibility_timeout_s=30)
    source = Source()
    try:
        await upgrade(db, script_location(notification.__file__))
        consumer = NotificationConsumer(
            queue,
            db,
            FlakyMailer(settings.mail_dir, failures=1),
            telemetry,
            poll_interval_s=0.01,
            retry_delay_s=0.1,
            source=source,
        )
        source.add(bk_id("6"))
        await queue.publish("booking.confirmed", booking_event(bk_id("6")), headers={}, message_id="m6")

        assert await consumer.process_once() == 1  # fails, nacked for 0.1 s
        assert await consumer.process_once() == 0  # not visible yet
        await asyncio.sleep(0.15)
        assert await consumer.process_once() == 1  # retried and sent

        failed, sent = [s for s in exporter.get_finished_spans() if s.name.endswith(" process")]
        assert failed.status.status_code is StatusCode.ERROR
        assert sent.status.status_code is StatusCode.UNSET
        assert (settings.mail_dir / f"{bk_id('6')}-confirmed.eml").exists()
        assert queue_states(settings) == {"m6": "acked"}
    finally:
        await queue.close()
        await db.dispose()
        telemetry.shutdown()


def test_money_is_formatted_from_minor_units_with_the_currency_exponent():
    assert format_money(Money(123450, "EUR")) == "1,234.50 EUR"
    assert format_money(Money(5, "USD")) == "0.05 USD"
    assert format_money(Money(45000, "JPY")) == "45,000 JPY"


# --- PostgreSQL: the same guard on the other engine ------------------------------------------


@pytest.mark.postgres
async def test_on_postgresql_a_redelivered_event_sends_no_second_email(tmp_path: Path):
    await require_postgres_async()
    prefix = f"t{uuid4().hex[:8]}_"
    settings = Settings(
        data_dir=tmp_path,
        queue_poll_interval_s=0.02,
        database_url=PG_URL,
        db_schema_prefix=prefix,
        admin_token=ADMIN_TOKEN,
    )
    try:
        async with running_service(settings) as service:
            first_id, _ = await service.publish("booking.confirmed", booking_event(bk_id("pg")))
            second_id, _ = await service.publish("booking.confirmed", booking_event(bk_id("pg")))
            await eventually(lambda: len(service.spans("booking.confirmed process")) == 2)
            assert len(service.spans("notification.send_email")) == 1
            assert [p.name for p in service.mails()] == [f"{bk_id('pg')}-confirmed.eml"]
            response = await service.client.get("/admin/notifications", headers=ADMIN)
            assert len(response.json()["notifications"]) == 1
            assert queue_states(service.settings) == {first_id: "acked", second_id: "acked"}
    finally:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{prefix}notification" CASCADE')
        finally:
            await conn.close()
