"""The HTTP API of pricing-engine: ``POST /prices``, ``POST /quotes``, ``GET /quotes/{quote_id}``,
``POST /quotes/{quote_id}/honour``."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Self

from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict, Field, model_validator

import bookline.services.pricing as pricing_package
from bookline.adapters.migrations import script_location
from bookline.config import Settings
from bookline.domain.pricing import PricedStay
from bookline.domain.terms import CancellationTerms
from bookline.services.common.app import create_service_app, documented, service_database
from bookline.services.common.auth import Auth
from bookline.services.common.fields import Guests, PropertyId, QuoteIdPath, RoomId, StrictDate
from bookline.services.pricing import handlers
from bookline.services.pricing.admin import add_admin_routes
from bookline.services.pricing.handlers import Quote
from bookline.telemetry import ServiceTelemetry

SERVICE = "pricing-engine"
MAX_ROOMS_PER_REQUEST = 500
MAX_GUESTS = 20

ERRORS = documented(401, 403, 404, 429)


class PricesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    property_id: PropertyId
    room_ids: list[RoomId] = Field(min_length=1, max_length=MAX_ROOMS_PER_REQUEST)
    check_in: StrictDate
    check_out: StrictDate
    guests: Guests
    issue_quotes: bool = Field(
        default=False, description="keep a quote of each room, honoured by a booking for quote_ttl_seconds"
    )


class QuoteRequest(BaseModel):
    # exactly one way of naming the rooms, in the schema as in the validation
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["room_id"]}, {"required": ["room_ids"]}]}
    )

    property_id: PropertyId
    room_id: RoomId = Field(default=None, description="quote this room")  # type: ignore[assignment]
    room_ids: list[RoomId] = Field(  # type: ignore[assignment]
        default=None,
        min_length=1,
        max_length=MAX_ROOMS_PER_REQUEST,
        description="or quote the cheapest of these rooms (equal prices: one at random)",
    )
    check_in: StrictDate
    check_out: StrictDate
    guests: Guests

    @model_validator(mode="after")
    def one_way_to_name_rooms(self) -> Self:
        if (self.room_id is None) == (self.room_ids is None):
            raise ValueError("give either room_id or room_ids")
        return self

    @property
    def rooms(self) -> list[str]:
        return [self.room_id] if self.room_id is not None else list(self.room_ids or [])


class HonourRequest(BaseModel):
    """The stay a quote is to be honoured for: it must be the stay the quote was issued for."""

    model_config = ConfigDict(extra="forbid")

    property_id: PropertyId
    room_id: RoomId | None = None
    check_in: StrictDate
    check_out: StrictDate
    guests: Guests


class NightPublic(BaseModel):
    night: date
    amount_minor: int
    rules: list[str]


class TermsPublic(BaseModel):
    free_cancellation_hours: int
    free_cancellation_until: datetime
    free_cancellation_until_local: datetime = Field(description="the same moment in the property's time zone")
    time_zone: str
    penalty_minor: int = Field(description="kept when cancelled from free_cancellation_until on")
    currency: str


class PricedStayPublic(BaseModel):
    currency: str
    nights: list[NightPublic]
    subtotal_minor: int
    taxes_minor: int
    total_minor: int
    rules_applied: list[str]
    cancellation: TermsPublic | None


class RoomPricePublic(PricedStayPublic):
    room_id: str
    quote_id: str | None = None
    expires_at: datetime | None = None


class PricesPublic(BaseModel):
    prices: list[RoomPricePublic]


class QuotePublic(PricedStayPublic):
    quote_id: str
    property_id: str
    room_id: str
    check_in: date
    check_out: date
    guests: int
    expires_at: datetime
    expired: bool


def _priced_fields(priced: PricedStay, terms: CancellationTerms | None) -> dict[str, object]:
    return {
        "cancellation": terms.as_dict() if terms else None,
        "currency": priced.total.currency,
        "nights": [{"night": n.night, "amount_minor": n.amount_minor, "rules": n.rules} for n in priced.nights],
        "subtotal_minor": priced.subtotal.minor,
        "taxes_minor": priced.taxes.minor,
        "total_minor": priced.total.minor,
        "rules_applied": priced.rules_applied,
    }


def _quote_public(quote: Quote, now: float) -> QuotePublic:
    return QuotePublic(
        quote_id=quote.quote_id,
        property_id=quote.property_id,
        room_id=quote.room_id,
        check_in=quote.stay.check_in,
        check_out=quote.stay.check_out,
        guests=quote.guests,
        expires_at=datetime.fromtimestamp(quote.expires_at, UTC),
        expired=quote.is_expired(now),
        **_priced_fields(quote.priced, quote.terms),  # type: ignore[arg-type]
    )


def build_app(settings: Settings, telemetry: ServiceTelemetry) -> FastAPI:
    db = service_database(settings, SERVICE)

    app = create_service_app(
        title=SERVICE,
        telemetry=telemetry,
        db=db,
        migrations=script_location(pricing_package.__file__),
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.request_body_timeout_s,
    )
    auth = Auth(settings, SERVICE)
    booking_only = [Depends(auth.services("booking-service"))]

    @app.post("/prices", dependencies=booking_only, responses=ERRORS)
    async def post_prices(body: PricesRequest) -> PricesPublic:
        """Price a stay in each listed room that has a rate plan; rooms without one are left out.
        With ``issue_quotes``, each price comes with a quote a booking is charged exactly."""
        stay = handlers.stay_of(body.check_in, body.check_out, max_nights=settings.max_stay_nights)
        priced = await handlers.price_rooms(
            db=db,
            tracer=telemetry.tracer,
            property_id=body.property_id,
            room_ids=body.room_ids,
            stay=stay,
            guests=body.guests,
        )
        quoted: dict[str, dict[str, object]] = {}
        if body.issue_quotes:
            issued = await handlers.quote_rooms(
                db=db,
                property_id=body.property_id,
                prices=priced,
                stay=stay,
                guests=body.guests,
                ttl_seconds=settings.quote_ttl_seconds,
                now=time.time(),
            )
            quoted = {
                q.room_id: {"quote_id": q.quote_id, "expires_at": datetime.fromtimestamp(q.expires_at, UTC)}
                for q in issued
            }
        return PricesPublic(
            prices=[
                RoomPricePublic(
                    room_id=p.room_id,
                    **quoted.get(p.room_id, {}),  # type: ignore[arg-type]
                    **_priced_fields(p.priced, p.terms),  # type: ignore[arg-type]
                )
                for p in priced
            ]
        )

    @app.post("/quotes", status_code=201, dependencies=booking_only, responses=ERRORS)
    async def post_quote(body: QuoteRequest) -> QuotePublic:
        """Price a stay in one room (or the cheapest of several) and keep the quote for
        ``quote_ttl_seconds``."""
        now = time.time()
        quote = await handlers.create_quote(
            db=db,
            tracer=telemetry.tracer,
            property_id=body.property_id,
            room_ids=body.rooms,
            stay=handlers.stay_of(body.check_in, body.check_out, max_nights=settings.max_stay_nights),
            guests=body.guests,
            ttl_seconds=settings.quote_ttl_seconds,
            now=now,
        )
        return _quote_public(quote, now)

    @app.post(
        "/quotes/{quote_id}/honour", dependencies=booking_only, responses=documented(401, 403, 404, 409, 422, 429)
    )
    async def honour_quote(quote_id: QuoteIdPath, body: HonourRequest) -> QuotePublic:
        """The quote itself when it still holds for this stay: not expired (409 ``quote_expired``) and
        the rates unchanged (409 ``price_changed``, with the new total and a new ``quote_id``)."""
        now = time.time()
        quote = await handlers.honour_quote(
            db=db,
            tracer=telemetry.tracer,
            quote_id=quote_id,
            property_id=body.property_id,
            room_id=body.room_id,
            stay=handlers.stay_of(body.check_in, body.check_out, max_nights=settings.max_stay_nights),
            guests=body.guests,
            ttl_seconds=settings.quote_ttl_seconds,
            now=now,
        )
        return _quote_public(quote, now)

    @app.get("/quotes/{quote_id}", dependencies=booking_only, responses=ERRORS)
    async def get_quote(quote_id: QuoteIdPath) -> QuotePublic:
        """A quote by id; an expired quote is still returned, with ``expired: true``."""
        quote = await handlers.get_quote(db=db, quote_id=quote_id)
        return _quote_public(quote, time.time())

    add_admin_routes(app, settings, db)
    return app
