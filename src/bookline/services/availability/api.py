"""availability-service HTTP API: properties, availability search and the hold lifecycle."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date
from typing import Annotated

from fastapi import FastAPI, Query
from opentelemetry.instrumentation.utils import suppress_instrumentation
from pydantic import BaseModel, Field

from bookline.adapters.migrations import script_location
from bookline.config import Settings
from bookline.domain.errors import HoldExpired, InvalidRequest
from bookline.domain.stay import StayDates
from bookline.faults import FaultFile, fire
from bookline.services import availability
from bookline.services.availability import handlers
from bookline.services.availability.admin import add_admin_routes
from bookline.services.availability.unsafe import drop_room_night_key
from bookline.services.common.app import create_service_app, service_database
from bookline.services.common.periodic import Periodic
from bookline.telemetry import ServiceTelemetry

NAME = "availability-service"
# a sweep that expires many holds at once names the first ones in its span, not all of them
MAX_EXPIRED_EVENTS = 50
log = logging.getLogger(__name__)


class HoldCreate(BaseModel):
    reservation_id: str = Field(min_length=1, max_length=40)
    property_id: str = Field(min_length=1, max_length=40)
    room_id: str = Field(min_length=1, max_length=60)
    check_in: date
    check_out: date
    ttl_seconds: float = Field(gt=0, le=24 * 3600)


def _stay(check_in: date, check_out: date) -> StayDates:
    if check_out <= check_in:
        raise InvalidRequest("invalid_stay", "check_out must be after check_in")
    return StayDates(check_in, check_out)


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

    async def startup() -> None:
        if settings.unsafe_disable_room_night_guard:
            log.warning("UNSAFE: the room-night key is off (test-only setting)")
            await drop_room_night_key(db)
        sweeper.start()

    async def shutdown() -> None:
        await sweeper.stop()

    app = create_service_app(
        title="Bookline availability-service",
        telemetry=telemetry,
        db=db,
        migrations=script_location(availability.__file__),
        max_body_bytes=settings.max_body_bytes,
        on_startup=[startup],
        on_shutdown=[shutdown],
    )

    @app.get("/properties")
    async def list_properties(
        city: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict:
        return {"properties": await handlers.list_properties(db=db, city=city, limit=limit, offset=offset)}

    @app.get("/properties/{property_id}")
    async def get_property(property_id: str) -> dict:
        return await handlers.get_property(db=db, property_id=property_id)

    @app.get("/availability")
    async def search(
        property_id: str,
        check_in: date,
        check_out: date,
        guests: Annotated[int, Query(ge=1, le=50)],
        room_id: str | None = None,
    ) -> dict:
        with tracer.start_as_current_span("availability.search") as span:
            span.set_attribute("booking.property_id", property_id)
            span.set_attribute("booking.guests", guests)
            delay_ms = faults.current().availability.delay_ms
            if delay_ms:
                fire(span, "availability.delay_ms")
                await asyncio.sleep(delay_ms / 1000)
            return await handlers.search(
                db=db, property_id=property_id, stay=_stay(check_in, check_out), guests=guests, room_id=room_id
            )

    @app.post("/holds", status_code=201)
    async def place_hold(body: HoldCreate) -> dict:
        with tracer.start_as_current_span("availability.place_hold") as span:
            span.set_attribute("booking.property_id", body.property_id)
            return await handlers.place_hold(
                db=db,
                reservation_id=body.reservation_id,
                property_id=body.property_id,
                room_id=body.room_id,
                stay=_stay(body.check_in, body.check_out),
                ttl_seconds=body.ttl_seconds,
            )

    @app.get("/holds/{reservation_id}")
    async def get_hold(reservation_id: str) -> dict:
        return await handlers.get_hold(db=db, reservation_id=reservation_id)

    @app.post("/holds/{reservation_id}/commit")
    async def commit_hold(reservation_id: str) -> dict:
        with tracer.start_as_current_span("availability.commit_hold"):
            try:
                return await handlers.commit_hold(db=db, reservation_id=reservation_id, guards=guards)
            except HoldExpired:
                holds_expired.add(1)
                raise

    @app.post("/holds/{reservation_id}/release")
    async def release_hold(reservation_id: str) -> dict:
        with tracer.start_as_current_span("availability.release_hold") as span:
            span.set_attribute("booking.reservation_id", reservation_id)
            return await handlers.release_hold(db=db, reservation_id=reservation_id)

    @app.post("/holds/{reservation_id}/restore")
    async def restore(reservation_id: str) -> dict:
        with tracer.start_as_current_span("availability.restore_inventory") as span:
            span.set_attribute("booking.reservation_id", reservation_id)
            return await handlers.restore_inventory(db=db, reservation_id=reservation_id)

    add_admin_routes(app, settings, db)
    return app
