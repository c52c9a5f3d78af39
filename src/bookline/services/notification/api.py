"""notification-service HTTP API (health, and the sent-notification log behind the admin token, for
audits and the notification reconciler) and the lifecycle of its queue consumer."""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import TTLCache
from fastapi import FastAPI

from bookline.adapters.mail import mailer_from
from bookline.adapters.migrations import script_location
from bookline.adapters.queue import MessageQueue, queue_from
from bookline.auth.services import ServiceCredentials
from bookline.config import Settings
from bookline.faults import FaultFile
from bookline.services import notification
from bookline.services.availability.client import AvailabilityClient
from bookline.services.common.app import create_service_app, service_database
from bookline.services.confirmation.client import ConfirmationClient
from bookline.services.notification import handlers
from bookline.services.notification.admin import add_admin_routes
from bookline.services.notification.consumer import NotificationConsumer
from bookline.telemetry import ServiceTelemetry

NAME = "notification-service"


class BookingSource:
    """The rest of an e-mail, asked for over the services' authenticated APIs: the booking and its
    guest at confirmation-service, the property and room at availability-service. A property is kept
    for ``property_cache_s`` (its name, address and rooms change rarely; the booking and the guest are
    asked for every e-mail): that is one call less per e-mail."""

    def __init__(self, settings: Settings, telemetry: ServiceTelemetry) -> None:
        ttl = settings.property_cache_s
        self.properties: TTLCache[str, dict] | None = TTLCache(maxsize=4096, ttl=ttl) if ttl > 0 else None
        credentials = ServiceCredentials.of(NAME, settings)
        timeout = settings.http_timeout_s
        self.confirmation = ConfirmationClient(
            settings.url_of("confirmation-service"), telemetry, timeout=timeout, credentials=credentials
        )
        self.availability = AvailabilityClient(
            settings.url_of("availability-service"), telemetry, timeout=timeout, credentials=credentials
        )

    async def notice(self, reservation_id: str) -> dict:
        return await self.confirmation.notice(reservation_id)

    async def get_property(self, property_id: str) -> dict:
        if self.properties is None:
            return await self.availability.get_property(property_id)
        found = self.properties.get(property_id)
        if found is None:
            found = self.properties[property_id] = await self.availability.get_property(property_id)
        return found

    async def aclose(self) -> None:
        await self.confirmation.aclose()
        await self.availability.aclose()


@dataclass
class _Running:
    queue: MessageQueue | None = None
    consumer: NotificationConsumer | None = None


def build_app(
    settings: Settings, telemetry: ServiceTelemetry, *, source: handlers.BookingSource | None = None
) -> FastAPI:
    """``source``: where the rest of an e-mail comes from (default: confirmation-service and
    availability-service over HTTP)."""
    db = service_database(settings, NAME)
    mailer = mailer_from(settings)
    faults = FaultFile(settings.faults_path)
    source = source or BookingSource(settings, telemetry)
    running = _Running()

    async def startup() -> None:
        queue = queue_from(settings, redelivery_rate=lambda: faults.current().queue.redelivery_rate, client_name=NAME)
        consumer = NotificationConsumer(
            queue,
            db,
            mailer,
            telemetry,
            poll_interval_s=settings.queue_poll_interval_s,
            faults=faults,
            source=source,
        )
        running.queue, running.consumer = queue, consumer
        consumer.start()

    async def shutdown() -> None:
        consumer, queue = running.consumer, running.queue
        running.consumer = running.queue = None
        if consumer is not None:
            await consumer.stop()
        if queue is not None:
            await queue.close()
        if isinstance(source, BookingSource):
            await source.aclose()

    app = create_service_app(
        title="Bookline notification-service",
        telemetry=telemetry,
        db=db,
        migrations=script_location(notification.__file__),
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.request_body_timeout_s,
        on_startup=[startup],
        on_shutdown=[shutdown],
    )

    add_admin_routes(app, settings, db)
    return app
