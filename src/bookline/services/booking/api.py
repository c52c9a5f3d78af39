"""booking-service: the public API of Bookline, and the home of the booking saga."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bookline.adapters.migrations import script_location
from bookline.auth.customers import Customer
from bookline.auth.services import ServiceCredentials
from bookline.config import Settings
from bookline.domain import ids
from bookline.domain.errors import BooklineError, InvalidRequest, NotFound
from bookline.domain.guest import same_email
from bookline.domain.stay import StayDates
from bookline.faults import FaultFile
from bookline.redaction import looks_like_card_number
from bookline.saga.deps import SagaDeps
from bookline.saga.instruments import BookingInstruments
from bookline.saga.orchestrator import Orchestrator, booking_summary, request_hash
from bookline.saga.reconcile import PaymentReconciler
from bookline.saga.recovery import Recovery
from bookline.saga.steps import BookingRequest
from bookline.saga.store import SagaStore
from bookline.services import booking
from bookline.services.availability.client import AvailabilityClient
from bookline.services.booking.admin import add_admin_routes
from bookline.services.booking.schemas import BookingCreate, BookingCreated, BookingList, BookingLookup
from bookline.services.common.app import create_service_app, documented, service_database
from bookline.services.common.auth import Auth, client_address
from bookline.services.common.fields import BookingIdPath, NoCard, PropertyIdPath, StrictDate
from bookline.services.confirmation.client import ConfirmationClient
from bookline.services.gateway.client import GatewayClient
from bookline.services.pricing.client import PricingClient
from bookline.telemetry import ServiceTelemetry

NAME = "booking-service"
ERRORS = documented(401, 402, 404, 409, 429, 502, 503, 504)
READ_ERRORS = documented(401, 404, 429, 502, 503, 504)
INVENTORY_ERRORS = documented(404, 502, 503, 504)
MAX_OFFSET = 100_000
MIN_LEASE_S = 2.0


def _today() -> date:
    return datetime.now(UTC).date()


def _stay(check_in: date, check_out: date, settings: Settings) -> StayDates:
    return StayDates.parse(check_in, check_out, today=_today(), max_nights=settings.max_stay_nights)


def _not_found(booking_id: str) -> NotFound:
    # the same answer whether the booking does not exist or is someone else's: ids cannot be probed
    return NotFound("booking_not_found", f"no booking {booking_id}")


class InvalidCursor(BooklineError):
    status, code = 400, "invalid_cursor"


def _cursor(created_at: float, booking_id: str) -> str:
    raw = json.dumps([created_at, booking_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str | None) -> tuple[float, str] | None:
    if cursor is None:
        return None
    try:
        created_at, booking_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(created_at, (int, float)) and not isinstance(created_at, bool) and isinstance(booking_id, str):
            return float(created_at), booking_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        pass
    raise InvalidCursor(message="the cursor is not one this endpoint gave out")


def saga_deps(
    settings: Settings, telemetry: ServiceTelemetry, store: SagaStore, *, faults: FaultFile | None = None
) -> SagaDeps:
    """What a replica of booking-service runs the saga with: its store, and a typed client of each
    service it calls, presenting booking-service's credential."""
    credentials = ServiceCredentials.of(NAME, settings)

    def client(cls: type, service: str):  # noqa: ANN202 - one of the typed clients
        return cls(settings.url_of(service), telemetry, timeout=settings.http_timeout_s, credentials=credentials)

    return SagaDeps(
        store=store,
        availability=client(AvailabilityClient, "availability-service"),
        pricing=client(PricingClient, "pricing-engine"),
        gateway=client(GatewayClient, "payment-gateway"),
        confirmation=client(ConfirmationClient, "confirmation-service"),
        tracer=telemetry.tracer,
        instruments=BookingInstruments(telemetry.meter),
        settings=settings,
        faults=faults,
        flush_telemetry=telemetry.flush,
    )


def build_app(settings: Settings, telemetry: ServiceTelemetry) -> FastAPI:
    db = service_database(settings, NAME)
    auth = Auth(settings, NAME, customers=True)
    as_customer = Depends(auth.customer)
    # a saga belongs to this replica for saga_stale_after_s past its last write (saga/lease.py)
    store = SagaStore(
        db,
        owner=telemetry.instance_id,
        # never shorter than a busy event loop may take to renew it
        lease_s=max(settings.saga_stale_after_s, MIN_LEASE_S),
        fencing=not settings.unsafe_disable_saga_fencing,
    )
    deps = saga_deps(settings, telemetry, store, faults=FaultFile(settings.faults_path))
    orchestrator = Orchestrator(deps)
    recovery = Recovery(orchestrator)
    reconciler = PaymentReconciler(deps)

    async def startup() -> None:
        recovery.job.start()
        reconciler.job.start()

    async def shutdown() -> None:
        await recovery.job.stop()
        await reconciler.job.stop()
        for service_client in (deps.availability, deps.pricing, deps.gateway, deps.confirmation):
            await service_client.aclose()

    app = create_service_app(
        title="Bookline booking-service",
        telemetry=telemetry,
        db=db,
        migrations=script_location(booking.__file__),
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.request_body_timeout_s,
        on_startup=[startup],
        on_shutdown=[shutdown],
    )

    @app.get("/properties", tags=["inventory"], responses=INVENTORY_ERRORS)
    async def list_properties(
        city: Annotated[str | None, Query(min_length=1, max_length=80)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict:
        """Properties, by city if given (open to anyone, as a hotel's search page is)."""
        return {"properties": await deps.availability.list_properties(city=city, limit=limit, offset=offset)}

    @app.get("/properties/{property_id}", tags=["inventory"], responses=INVENTORY_ERRORS)
    async def get_property(property_id: PropertyIdPath) -> dict:
        return await deps.availability.get_property(property_id)

    @app.get("/availability", tags=["inventory"], responses=INVENTORY_ERRORS)
    async def availability(
        property_id: Annotated[str, Query(pattern=ids.PROPERTY_ID, max_length=40), NoCard],
        check_in: Annotated[StrictDate, Query()],
        check_out: Annotated[StrictDate, Query()],
        guests: Annotated[int, Query(ge=1, le=20)],
        room_type: Annotated[str | None, Query(pattern=ids.ROOM_TYPE, max_length=40)] = None,
    ) -> dict:
        """The free rooms of a property for a stay, cheapest first, each with its nightly prices, total,
        cancellation terms and a ``quote_id``: a booking that sends it is charged exactly that total
        (within ``quote_ttl_seconds``)."""
        stay = _stay(check_in, check_out, settings)
        found = await deps.availability.search(
            property_id=property_id,
            check_in=stay.check_in,
            check_out=stay.check_out,
            guests=guests,
            room_type=room_type,
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
                issue_quotes=True,
            )
            prices = {p["room_id"]: p for p in priced}
        offers = [{**room, **prices[room["room_id"]]} for room in rooms if room["room_id"] in prices]
        offers.sort(key=lambda offer: (offer["total_minor"], offer["room_id"]))
        return {
            "property_id": property_id,
            "check_in": stay.check_in.isoformat(),
            "check_out": stay.check_out.isoformat(),
            "guests": guests,
            "quote_ttl_seconds": settings.quote_ttl_seconds,
            "rooms": offers,
        }

    @app.post("/bookings", status_code=201, response_model=BookingCreated, responses=ERRORS, tags=["bookings"])
    async def create_booking(
        body: BookingCreate,
        request: Request,
        # required (a missing one answers 400 missing_idempotency_key, see common.app)
        idempotency_key: Annotated[str, Header(min_length=1, max_length=200)],
        customer: Customer = as_customer,
    ) -> JSONResponse:
        """Book a stay for the calling customer: availability, price, hold, authorize, confirm,
        capture; rolled back on failure."""
        await auth.limits.hit("bookings_per_customer", customer.user_id)
        await auth.limits.hit("bookings_per_address", client_address(request))
        if looks_like_card_number(idempotency_key):
            raise InvalidRequest("invalid_idempotency_key", "the Idempotency-Key must not look like a card number")
        stay = _stay(body.check_in, body.check_out, settings)
        booking_request = BookingRequest(
            booking_id=ids.new_booking_id(),
            reservation_id=ids.new_reservation_id(),
            user_id=customer.user_id,
            source=body.source.value,
            property_id=body.property_id,
            stay=stay,
            guests=body.guests,
            room_id=body.room_id,
            payment_method=body.payment.method,
            payment_token=body.payment.token,
            card_last_four=body.payment.card_last_four,
            guest=body.guest.to_domain(),
            room_type=body.room_type,
            quote_id=body.quote_id,
        )
        # a key is the customer's own: the same key from another customer is another request. The key
        # is the client's free text (it could even hold a card number): keep only a digest
        key = hashlib.sha256(f"{customer.user_id}\0{idempotency_key}".encode()).hexdigest()
        response = await orchestrator.create_booking(
            booking_request, key=key, body_hash=request_hash(body.model_dump(mode="json"))
        )
        return JSONResponse(with_trace_url(response.body), status_code=response.status)

    @app.get("/bookings", response_model=BookingList, responses=documented(400, 401, 429), tags=["bookings"])
    async def list_bookings(
        customer: Customer = as_customer,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        after: Annotated[str | None, Query(max_length=200, description="the `next` of the previous page")] = None,
    ) -> dict:
        """The calling customer's own bookings, newest first, a page at a time."""
        rows = await deps.store.bookings_of(customer.user_id, limit=limit + 1, after=_after(after))
        page = rows[:limit]
        views = [with_trace_url(booking_summary(row)) for row in page]
        following = _cursor(page[-1].created_at, page[-1].booking_id) if len(rows) > limit else None
        return {"bookings": views, "next": following}

    @app.post("/bookings/lookup", responses=documented(404, 429), tags=["bookings"])
    async def lookup_booking(body: BookingLookup, request: Request) -> dict:
        """A booking found by its confirmation code and the guest's e-mail address, for a guest
        without an account. Any mismatch answers the same 404, never saying which field was wrong."""
        await auth.limits.hit("lookups_per_address", client_address(request))
        row = await deps.store.find_by_code(body.confirmation_code)
        if row is None or not row.guest_email or not same_email(row.guest_email, body.email):
            raise NotFound("booking_not_found", "no booking has this confirmation code and e-mail address")
        # the account that booked it is not the finder's business
        view = {k: v for k, v in (await orchestrator.view(row.booking_id)).items() if k != "user_id"}
        return with_trace_url(view)

    @app.api_route("/bookings/lookup", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def lookup_is_a_post() -> None:
        # without it GET /bookings/lookup would be GET /bookings/{booking_id} of a malformed id (422)
        raise StarletteHTTPException(405)

    @app.get("/bookings/{booking_id}", responses=READ_ERRORS, tags=["bookings"])
    async def get_booking(booking_id: BookingIdPath, customer: Customer = as_customer) -> dict:
        """A booking of the caller's (any booking, for a token with the admin scope)."""
        await owned(booking_id, customer)
        return with_trace_url(await orchestrator.view(booking_id))

    @app.post("/bookings/{booking_id}/cancel", responses=documented(401, 404, 409, 429, 502, 503, 504),
              tags=["bookings"])  # fmt: skip
    async def cancel_booking(booking_id: BookingIdPath, customer: Customer = as_customer) -> dict:
        """Cancel a confirmed booking of the caller's: refund, release the nights, send the cancellation e-mail."""
        await owned(booking_id, customer)
        return with_trace_url(await orchestrator.cancel_booking(booking_id))

    async def owned(booking_id: str, customer: Customer) -> None:
        try:
            row = await deps.store.get(booking_id)
        except NotFound:
            raise _not_found(booking_id) from None
        if not customer.may_see(row.user_id) and not settings.unsafe_disable_ownership:
            raise _not_found(booking_id)

    def with_trace_url(body: dict) -> dict:
        """Link the answer to its trace in the viewer, when one is known (``bookline up`` sets it)."""
        if settings.trace_view_url and body.get("trace_id"):
            return {**body, "trace_url": settings.trace_view_url.format(trace_id=body["trace_id"])}
        return body

    add_admin_routes(app, settings, db)
    return app
