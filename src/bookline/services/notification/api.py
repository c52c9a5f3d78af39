"""notification-service HTTP API (health, and the sent-notification log behind the admin token, for
audits and the notification reconciler) and the lifecycle of its queue consumer."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from bookline.adapters.mail import EmlMailer
from bookline.adapters.migrations import script_location
from bookline.adapters.queue.sqlite import SqliteQueue
from bookline.config import Settings
from bookline.faults import FaultFile
from bookline.services import notification
from bookline.services.common.app import create_service_app, service_database
from bookline.services.notification.admin import add_admin_routes
from bookline.services.notification.consumer import NotificationConsumer
from bookline.telemetry import ServiceTelemetry

NAME = "notification-service"


@dataclass
class _Running:
    queue: SqliteQueue | None = None
    consumer: NotificationConsumer | None = None


def build_app(settings: Settings, telemetry: ServiceTelemetry) -> FastAPI:
    db = service_database(settings, NAME)
    mailer = EmlMailer(settings.mail_dir)
    faults = FaultFile(settings.faults_path)
    running = _Running()

    async def startup() -> None:
        queue = SqliteQueue(
            settings.queue_path,
            visibility_timeout_s=settings.queue_visibility_timeout_s,
            redelivery_rate=lambda: faults.current().queue.redelivery_rate,
        )
        consumer = NotificationConsumer(
            queue, db, mailer, telemetry, poll_interval_s=settings.queue_poll_interval_s, faults=faults
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
