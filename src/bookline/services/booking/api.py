"""booking-service: the public API of Bookline, and the home of the booking saga."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import FastAPI, Header, Query
from fastapi.responses import JSONResponse

from bookline.adapters.migrations import script_location
from bookline.config import Settings
from bookline.domain.errors import BooklineError
from bookline.domain.stay import StayDates
from bookline.faults import FaultFile
from bookline.saga.deps import SagaDeps
from bookline.saga.instruments import BookingInstruments
from bookline.saga.orchestrator import Orchestrator, request_hash
from bookline.saga.reconcile import PaymentReconciler
from bookline.saga.recovery import Recovery
from bookline.saga.steps import BookingRequest
from bookline.saga.store import SagaStore
from bookline.services import booking
from bookline.services.availability.client import AvailabilityClient
from bookline.services.booking.admin import add_admin_routes
from bookline.services.booking.schemas import BookingCreate, BookingCreated
from bookline.services.common.app import create_service_app, service_database
from bookline.services.confirmation.client import ConfirmationClient
from bookline.services.gateway.client import GatewayClient
from bookline.services.pricing.client import PricingClient
from bookline.telemetry import ServiceTelemetry

NAME = "booking-service"
ERRORS = {
    400: {"description": "Malformed JSON or a missing Idempotency-Key"},
    402: {"description": "payment_declined, with decline_reason"},
    404: {"description": "Unknown property, room or booking"},
    409: {"description": "unavailable, lock_contention, hold_expired or idempotency_in_flight"},
    422: {"description": "Validation error, or idempotency_key_reused with another body"},
    502: {"description": "A dependency failed"},
    504: {"description": "A dependency did not answer in time"},
}


def _today() -> date:
    return datetime.now(UTC).date()


def _stay(check_in: date, check_out: date, settings: Settings) -> StayDates:
    return StayDates.parse(check_in, check_out, today=_today(), max_nights=settings.max_stay_nights)


def build_app(settings: Settings, telemetry: ServiceTelemetry) -> FastAPI:
    db = service_database(settings, NAME)
    timeout = settings.http_timeout_s
    deps = SagaDeps(
        store=SagaStore(db),
        availability=AvailabilityClient(settings.url_of("availability-service"), telemetry, timeout=timeout),
        pricing=PricingClient(settings.url_of("pricing-engine"), telemetry, timeout=timeout),
        gateway=GatewayClient(settings.url_of("payment-gateway"), telemetry, timeout=timeout),
        confirmation=ConfirmationClient(settings.url_of("confirmation-service"), telemetry, timeout=timeout),
        tracer=telemetry.tracer,
        instruments=BookingInstruments(telemetry.meter),
        settings=settings,
        faults=FaultFile(settings.faults_path),
        flush_telemetry=telemetry.flush,
    )
    orchestrator = Orchestrator(deps)
    recovery = Recovery(orchestrator)
    reconciler = PaymentReconciler(deps)

    async def startup() -> None:
        recovery.job.start()
        reconciler.job.start()

    async def shutdown() -> None:
        await recovery.job.stop()
        await reconciler.job.stop()
        for client in (deps.availability, deps.pricing, deps.gateway, deps.confirmation):
            await client.aclose()

    app = create_service_app(
        title="Bookline booking-service",
        telemetry=telemetry,
        db=db,
        migrations=script_location(booking.__file__),
        max_body_bytes=settings.max_body_bytes,
        on_startup=[startup],
        on_shutdown=[shutdown],
    )

    @app.get("/properties", tags=["inventory"])
    async def list_properties(
        city: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict:
        return {"properties": await deps.availability.list_properties(city=city, limit=limit, offset=offset)}

    @app.get("/properties/{property_id}", tags=["inventory"])
    async def get_property(property_id: str) -> dict:
        return await deps.availability.get_property(property_id)

    @app.get("/availability", tags=["inventory"])
    async def availability(
        property_id: str,
        check_in: date,
        check_out: date,
        guests: Annotated[int, Query(ge=1, le=20)],
    ) -> dict:
        """The free rooms of a property for a stay, each with its nightly prices and total."""
        stay = _stay(check_in, check_out, settings)
        found = await deps.availability.search(
            property_id=property_id, check_in=stay.check_in, check_out=stay.check_out, guests=guests
        )
        rooms = found["rooms"]
        prices = {}
        if rooms:
            priced = await deps.pricing.price_rooms(
                property_id=property_id,
                room_ids=[r["room_id"] for r in rooms],
                check_in=stay.check_in,
                check_out=stay.check_out,
                guests=guests,
            )
            prices = {p["room_id"]: p for p in priced}
        return {
            "property_id": property_id,
            "check_in": stay.check_in.isoformat(),
            "check_out": stay.check_out.isoformat(),
            "guests": guests,
            "rooms": [{**room, **prices[room["room_id"]]} for room in rooms if room["room_id"] in prices],
        }

    @app.post("/bookings", status_code=201, response_model=BookingCreated, responses=ERRORS, tags=["bookings"])
    async def create_booking(
        body: BookingCreate,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        """Book a stay: availability, price, hold, authorize, confirm, capture; rolled back on failure."""
        if not idempotency_key:
            raise BooklineError("missing_idempotency_key", "the Idempotency-Key header is required")
        stay = _stay(body.check_in, body.check_out, settings)
        request = BookingRequest(
            booking_id=f"bk_{uuid.uuid4().hex[:24]}",
            reservation_id=f"rsv_{uuid.uuid4().hex[:24]}",
            user_id=body.user_id,
            source=body.source.value,
            property_id=body.property_id,
            stay=stay,
            guests=body.guests,
            room_id=body.room_id,
            payment_method=body.payment.method,
            payment_token=body.payment.token,
            card_last_four=body.payment.card_last_four,
        )
        # the key is the client's free text (it could even hold a card number): keep only a digest
        key = hashlib.sha256(idempotency_key.encode()).hexdigest()
        response = await orchestrator.create_booking(
            request, key=key, body_hash=request_hash(body.model_dump(mode="json"))
        )
        return JSONResponse(with_trace_url(response.body), status_code=response.status)

    @app.get("/bookings/{booking_id}", tags=["bookings"])
    async def get_booking(booking_id: str) -> dict:
        return with_trace_url(await orchestrator.view(booking_id))

    @app.post("/bookings/{booking_id}/cancel", tags=["bookings"])
    async def cancel_booking(booking_id: str) -> dict:
        """Cancel a confirmed booking: refund, release the nights, send the cancellation e-mail."""
        return with_trace_url(await orchestrator.cancel_booking(booking_id))

    def with_trace_url(body: dict) -> dict:
        """Link the answer to its trace in the viewer, when one is known (``bookline up`` sets it)."""
        if settings.trace_view_url and body.get("trace_id"):
            return {**body, "trace_url": settings.trace_view_url.format(trace_id=body["trace_id"])}
        return body

    add_admin_routes(app, settings, db)
    return app
