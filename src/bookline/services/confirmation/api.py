"""confirmation-service HTTP API, and the outbox relay that publishes its events."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from bookline.adapters.migrations import script_location
from bookline.adapters.queue import queue_from
from bookline.admin_token import resolve_admin_token
from bookline.auth.customers import SUBJECT
from bookline.auth.services import ServiceCredentials
from bookline.config import Settings
from bookline.services import confirmation
from bookline.services.availability.client import AvailabilityClient
from bookline.services.common.app import create_service_app, documented, service_database
from bookline.services.common.auth import Auth
from bookline.services.common.fields import (
    AuthorizationId,
    BookingId,
    Currency,
    GuestIn,
    MinorAmount,
    NoCard,
    PropertyId,
    ReservationId,
    ReservationIdPath,
    RoomId,
    RoomType,
    StrictDate,
    TimeZone,
)
from bookline.services.common.outbox import OutboxRelay
from bookline.services.confirmation import handlers
from bookline.services.confirmation.admin import add_admin_routes
from bookline.services.confirmation.reconcile import NotificationReconciler
from bookline.services.confirmation.tables import outbox
from bookline.services.notification.client import NotificationClient
from bookline.telemetry import ServiceTelemetry

NAME = "confirmation-service"
log = logging.getLogger(__name__)


ERRORS = documented(401, 403, 404, 409, 429, 502, 503, 504)


class NightIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    night: StrictDate
    amount_minor: MinorAmount


class TermsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    free_cancellation_hours: Annotated[int, Field(strict=True, ge=0, le=24 * 366)]
    free_cancellation_until: AwareDatetime
    free_cancellation_until_local: AwareDatetime | None = None
    time_zone: TimeZone
    penalty_minor: MinorAmount
    currency: Currency


class StayDetails(BaseModel):
    """What the guest's e-mail shows of the price."""

    model_config = ConfigDict(extra="forbid")

    nights: list[NightIn] = Field(max_length=400)
    taxes_minor: MinorAmount
    cancellation: TermsIn | None = None


class CancellationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refund_minor: MinorAmount | None = None
    cancellation_penalty_minor: MinorAmount | None = None


class ConfirmationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    booking_id: BookingId
    reservation_id: ReservationId
    property_id: PropertyId
    room_id: RoomId
    check_in: StrictDate
    check_out: StrictDate
    user_id: Annotated[str, Field(pattern=SUBJECT.pattern, max_length=64), NoCard]
    total_minor: MinorAmount
    currency: Currency
    payment_transaction_id: AuthorizationId
    room_type: RoomType | None = None
    guest: GuestIn
    details: StayDetails | None = None


def build_app(settings: Settings, telemetry: ServiceTelemetry) -> FastAPI:
    db = service_database(settings, NAME)
    availability = AvailabilityClient(
        settings.url_of("availability-service"),
        telemetry,
        timeout=settings.http_timeout_s,
        credentials=ServiceCredentials.of(NAME, settings),
    )
    auth = Auth(settings, NAME)
    booking_only = [Depends(auth.services("booking-service"))]
    queue = queue_from(settings, client_name=NAME)
    relay = OutboxRelay(
        db, outbox, queue, telemetry, poll_interval_s=settings.outbox_poll_interval_s, owner=telemetry.instance_id
    )
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
        body_timeout_s=settings.request_body_timeout_s,
        on_startup=[startup],
        on_shutdown=[shutdown],
    )

    @app.post("/confirmations", status_code=201, dependencies=booking_only, responses=ERRORS)
    async def confirm(body: ConfirmationCreate) -> dict:
        with tracer.start_as_current_span("confirmation.confirm"):
            fields = body.model_dump(mode="json", exclude={"guest", "check_in", "check_out"})
            request = handlers.Confirmation(
                **fields, check_in=body.check_in, check_out=body.check_out, guest=body.guest.to_domain().as_dict()
            )
            return await handlers.confirm(db=db, availability=availability, request=request)

    @app.get("/confirmations/{reservation_id}", responses=ERRORS,
             dependencies=[Depends(auth.services("booking-service", "availability-service"))])  # fmt: skip
    async def get_confirmation(reservation_id: ReservationIdPath) -> dict:
        return await handlers.get_confirmation(db=db, reservation_id=reservation_id)

    @app.get("/confirmations/{reservation_id}/notice", responses=ERRORS,
             dependencies=[Depends(auth.services("notification-service"))])  # fmt: skip
    async def get_notice(reservation_id: ReservationIdPath) -> dict:
        """What the guest's e-mail says, the guest's name and address included: notification-service
        reads it here rather than from the queue, which carries ids only."""
        return await handlers.get_notice(db=db, reservation_id=reservation_id)

    @app.post("/confirmations/{reservation_id}/cancel", dependencies=booking_only, responses=ERRORS)
    async def cancel(reservation_id: ReservationIdPath, body: CancellationIn | None = None) -> dict:
        """Cancel a booking; ``refund_minor`` and ``cancellation_penalty_minor`` are what booking-service
        refunds and keeps under the booking's terms (the cancellation e-mail states them)."""
        terms = body or CancellationIn()
        with tracer.start_as_current_span("confirmation.cancel"):
            return await handlers.cancel(
                db=db,
                reservation_id=reservation_id,
                refund_minor=terms.refund_minor,
                penalty_minor=terms.cancellation_penalty_minor,
            )

    add_admin_routes(app, settings, db)
    return app
