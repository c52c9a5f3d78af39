"""confirmation-service HTTP API, and the outbox relay that publishes its events."""

from __future__ import annotations

import logging
from datetime import date

from fastapi import FastAPI
from pydantic import BaseModel, Field

from bookline.adapters.migrations import script_location
from bookline.adapters.queue.sqlite import SqliteQueue
from bookline.admin_token import resolve_admin_token
from bookline.config import Settings
from bookline.services import confirmation
from bookline.services.availability.client import AvailabilityClient
from bookline.services.common.app import create_service_app, service_database
from bookline.services.common.outbox import OutboxRelay
from bookline.services.confirmation import handlers
from bookline.services.confirmation.admin import add_admin_routes
from bookline.services.confirmation.reconcile import NotificationReconciler
from bookline.services.confirmation.tables import outbox
from bookline.services.notification.client import NotificationClient
from bookline.telemetry import ServiceTelemetry

NAME = "confirmation-service"
log = logging.getLogger(__name__)


class ConfirmationCreate(BaseModel):
    booking_id: str = Field(min_length=1, max_length=40)
    reservation_id: str = Field(min_length=1, max_length=40)
    property_id: str = Field(min_length=1, max_length=40)
    room_id: str = Field(min_length=1, max_length=60)
    check_in: date
    check_out: date
    user_id: str = Field(min_length=1, max_length=64)
    total_minor: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    payment_transaction_id: str = Field(min_length=1, max_length=64)


def build_app(settings: Settings, telemetry: ServiceTelemetry) -> FastAPI:
    db = service_database(settings, NAME)
    availability = AvailabilityClient(
        settings.url_of("availability-service"), telemetry, timeout=settings.http_timeout_s
    )
    queue = SqliteQueue(settings.queue_path, visibility_timeout_s=settings.queue_visibility_timeout_s)
    relay = OutboxRelay(db, outbox, queue, telemetry, poll_interval_s=settings.outbox_poll_interval_s)
    tracer = telemetry.tracer
    admin_token = resolve_admin_token(settings)
    notifications = NotificationClient(
        settings.url_of("notification-service"), telemetry, timeout=settings.http_timeout_s, admin_token=admin_token
    )
    reconciler = NotificationReconciler(
        db,
        notifications,
        tracer,
        interval_s=settings.reconcile_interval_s,
        settle_after_s=settings.reconcile_settle_after_s,
    )

    async def startup() -> None:
        relay.start()
        if admin_token is None:
            # what was sent is behind notification-service's admin API
            log.warning("the notification reconciler is off: no admin token is set")
        else:
            reconciler.job.start()

    async def shutdown() -> None:
        await reconciler.job.stop()
        await relay.stop()
        await notifications.aclose()
        await queue.close()
        await availability.aclose()

    app = create_service_app(
        title="Bookline confirmation-service",
        telemetry=telemetry,
        db=db,
        migrations=script_location(confirmation.__file__),
        max_body_bytes=settings.max_body_bytes,
        on_startup=[startup],
        on_shutdown=[shutdown],
    )

    @app.post("/confirmations", status_code=201)
    async def confirm(body: ConfirmationCreate) -> dict:
        with tracer.start_as_current_span("confirmation.confirm"):
            return await handlers.confirm(
                db=db, availability=availability, request=handlers.Confirmation(**body.model_dump())
            )

    @app.get("/confirmations/{reservation_id}")
    async def get_confirmation(reservation_id: str) -> dict:
        return await handlers.get_confirmation(db=db, reservation_id=reservation_id)

    @app.post("/confirmations/{reservation_id}/cancel")
    async def cancel(reservation_id: str) -> dict:
        with tracer.start_as_current_span("confirmation.cancel"):
            return await handlers.cancel(db=db, availability=availability, reservation_id=reservation_id)

    add_admin_routes(app, settings, db)
    return app
