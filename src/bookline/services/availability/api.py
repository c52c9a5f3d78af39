"""availability-service HTTP API: properties, availability search and the hold lifecycle."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Query
from opentelemetry.instrumentation.utils import suppress_instrumentation
from pydantic import BaseModel, ConfigDict, Field

from bookline.adapters.migrations import script_location
from bookline.auth.services import ServiceCredentials
from bookline.config import Settings
from bookline.domain import ids
from bookline.domain.errors import Conflict, HoldExpired, InvalidRequest, NotFound
from bookline.domain.stay import StayDates
from bookline.faults import FaultFile, fire
from bookline.services import availability
from bookline.services.availability import handlers
from bookline.services.availability.admin import add_admin_routes
from bookline.services.availability.unsafe import drop_room_night_key
from bookline.services.common.app import create_service_app, documented, service_database
from bookline.services.common.auth import Auth
from bookline.services.common.fields import (
    NoCard,
    PropertyId,
    PropertyIdPath,
    ReservationId,
    ReservationIdPath,
    RoomId,
    StrictDate,
)
from bookline.services.common.periodic import Periodic
from bookline.services.confirmation.client import ConfirmationClient
from bookline.telemetry import ServiceTelemetry

NAME = "availability-service"
# a sweep that expires many holds at once names the first ones in its span, not all of them
MAX_EXPIRED_EVENTS = 50
log = logging.getLogger(__name__)


# a hold lives at least a tenth of a second (tests use short ones) and at most a day (the fault file's hold.ttl_seconds has the same bound)
MIN_HOLD_TTL_S = 0.1
MAX_HOLD_TTL_S = 24 * 3600.0
MAX_OFFSET = 100_000
ERRORS = documented(401, 403, 404, 409, 429)


class HoldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reservation_id: ReservationId
    property_id: PropertyId
    room_id: RoomId
    check_in: StrictDate
    check_out: StrictDate
    ttl_seconds: float = Field(ge=MIN_HOLD_TTL_S, le=MAX_HOLD_TTL_S, allow_inf_nan=False)


def _stay(check_in: date, check_out: date) -> StayDates:
    if check_out <= check_in:
        raise InvalidRequest("invalid_stay", "check_out must be after check_in")
    return StayDates(check_in, check_out)


def _bookable_stay(check_in: date, check_out: date, settings: Settings) -> StayDates:
    """A hold follows the rules of a booking: not in the past, not too far ahead, not too long."""
    return StayDates.parse(check_in, check_out, today=datetime.now(UTC).date(), max_nights=settings.max_stay_nights)


def build_app(settings: Settings, telemetry: ServiceTelemetry) -> FastAPI:
    db = service_database(settings, NAME)
    guards = handlers.Guards(fencing=not settings.unsafe_disable_fencing)
    faults = FaultFile(settings.faults_path)
    tracer = telemetry.tracer
    holds_expired = telemetry.meter.create_counter(
        "booking.holds.expired", description="Holds that reached their expiry without being committed"
    )

    async def sweep_once() -> int:
        """Expire the holds past their TTL. The poll itself leaves no trace (a root trace of its
        SELECT every few seconds would drown the rest); a sweep that expired holds does."""
        started = time.time_ns()
        with suppress_instrumentation():
            expired = await handlers.sweep_expired_holds(db=db)
        if expired:
            holds_expired.add(len(expired))
            span = tracer.start_span("availability.expire_holds", start_time=started)
            span.set_attribute("hold.expired_count", len(expired))
            for reservation_id in expired[:MAX_EXPIRED_EVENTS]:
                span.add_event("hold_expired", {"booking.reservation_id": reservation_id, "hold.status": "expired"})
            span.end()
        return len(expired)

    sweeper = Periodic("hold-sweeper", settings.hold_sweep_interval_s, sweep_once)
    auth = Auth(settings, NAME)
    booking_only = [Depends(auth.services("booking-service"))]
    confirmations = ConfirmationClient(
        settings.url_of("confirmation-service"),
        telemetry,
        timeout=settings.http_timeout_s,
        credentials=ServiceCredentials.of(NAME, settings),
    )

    async def startup() -> None:
        if settings.unsafe_disable_room_night_guard:
            log.warning("UNSAFE: the room-night key is off (test-only setting)")
            await drop_room_night_key(db)
        sweeper.start()

    async def shutdown() -> None:
        await sweeper.stop()
        await confirmations.aclose()

    app = create_service_app(
        title="Bookline availability-service",
        telemetry=telemetry,
        db=db,
        migrations=script_location(availability.__file__),
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.request_body_timeout_s,
        on_startup=[startup],
        on_shutdown=[shutdown],
    )

    @app.get("/properties", dependencies=booking_only, responses=ERRORS)
    async def list_properties(
        city: Annotated[str | None, Query(min_length=1, max_length=80)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict:
        return {"properties": await handlers.list_properties(db=db, city=city, limit=limit, offset=offset)}

    # notification-service reads a property's name, address, time zone and rooms for the e-mail
    @app.get("/properties/{property_id}", responses=ERRORS,
             dependencies=[Depends(auth.services("booking-service", "notification-service"))])  # fmt: skip
    async def get_property(property_id: PropertyIdPath) -> dict:
        return await handlers.get_property(db=db, property_id=property_id)

    @app.get("/availability", dependencies=booking_only, responses=ERRORS)
    async def search(
        property_id: Annotated[str, Query(pattern=ids.PROPERTY_ID, max_length=40), NoCard],
        check_in: Annotated[StrictDate, Query()],
        check_out: Annotated[StrictDate, Query()],
        guests: Annotated[int, Query(ge=1, le=50)],
        room_id: Annotated[str | None, Query(pattern=ids.ROOM_ID, max_length=60), NoCard] = None,
        room_type: Annotated[str | None, Query(pattern=ids.ROOM_TYPE, max_length=40)] = None,
    ) -> dict:
        with tracer.start_as_current_span("availability.search") as span:
            span.set_attribute("booking.property_id", property_id)
            span.set_attribute("booking.guests", guests)
            delay_ms = faults.current().availability.delay_ms
            if delay_ms:
                fire(span, "availability.delay_ms")
                await asyncio.sleep(delay_ms / 1000)
            return await handlers.search(
                db=db,
                property_id=property_id,
                stay=_stay(check_in, check_out),
                guests=guests,
                room_id=room_id,
                room_type=room_type,
            )

    @app.post("/holds", status_code=201, dependencies=booking_only, responses=ERRORS)
    async def place_hold(body: HoldCreate) -> dict:
        with tracer.start_as_current_span("availability.place_hold") as span:
            span.set_attribute("booking.property_id", body.property_id)
            return await handlers.place_hold(
                db=db,
                reservation_id=body.reservation_id,
                property_id=body.property_id,
                room_id=body.room_id,
                stay=_bookable_stay(body.check_in, body.check_out, settings),
                ttl_seconds=body.ttl_seconds,
            )

    @app.get("/holds/{reservation_id}", dependencies=booking_only, responses=ERRORS)
    async def get_hold(reservation_id: ReservationIdPath) -> dict:
        return await handlers.get_hold(db=db, reservation_id=reservation_id)

    @app.post("/holds/{reservation_id}/commit", responses=ERRORS,
              dependencies=[Depends(auth.services("confirmation-service"))])  # fmt: skip
    async def commit_hold(reservation_id: ReservationIdPath) -> dict:
        with tracer.start_as_current_span("availability.commit_hold"):
            try:
                return await handlers.commit_hold(db=db, reservation_id=reservation_id, guards=guards)
            except HoldExpired:
                holds_expired.add(1)
                raise

    @app.post("/holds/{reservation_id}/release", dependencies=booking_only, responses=ERRORS)
    async def release_hold(reservation_id: ReservationIdPath) -> dict:
        """Give back the nights of a hold that was never committed (a committed hold is left alone)."""
        with tracer.start_as_current_span("availability.release_hold") as span:
            span.set_attribute("booking.reservation_id", reservation_id)
            return await handlers.release_hold(db=db, reservation_id=reservation_id)

    @app.post("/holds/{reservation_id}/restore", dependencies=booking_only, responses=ERRORS)
    async def restore(reservation_id: ReservationIdPath) -> dict:
        """Give back the nights of a reservation: a hold, or booked nights whose booking is cancelled
        (or was never created). The nights of a confirmed booking are refused (409 hold_committed)."""
        with tracer.start_as_current_span("availability.restore_inventory") as span:
            span.set_attribute("booking.reservation_id", reservation_id)
            await refuse_while_confirmed(reservation_id)
            return await handlers.restore_inventory(db=db, reservation_id=reservation_id)

    async def refuse_while_confirmed(reservation_id: str) -> None:
        if settings.unsafe_disable_hold_state_checks:  # test-only: the control test of this check
            return
        try:
            hold = await handlers.get_hold(db=db, reservation_id=reservation_id)
        except NotFound:
            return
        if hold["status"] != "committed":
            return
        # the booking's own record decides, whoever asks: confirmation-service holds it
        booking = await confirmations.find(reservation_id)
        if booking is not None and booking.get("status") == "confirmed":
            raise Conflict(
                "hold_committed", "the nights of a confirmed booking are given back only by its cancellation"
            )

    add_admin_routes(app, settings, db)
    return app
