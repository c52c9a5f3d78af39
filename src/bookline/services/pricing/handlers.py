"""What pricing-engine does: price the rooms of a property for a stay, issue quotes, read them back.

Plain async functions with keyword-only dependencies; they raise domain errors and know nothing
of HTTP.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from opentelemetry.trace import Tracer
from sqlalchemy import Row, RowMapping, bindparam, insert, select

from bookline.adapters.db import Database
from bookline.domain import ids
from bookline.domain.errors import Conflict, InvalidRequest, InvalidStay, NotFound
from bookline.domain.money import Money
from bookline.domain.pricing import NightPrice, PricedStay, RatePlan, cancellation_terms, price_stay
from bookline.domain.stay import StayDates
from bookline.domain.terms import CancellationTerms
from bookline.services.pricing.tables import quotes, rate_plans


@dataclass(frozen=True)
class Quote:
    """A priced stay of one room, kept so the booking can be charged exactly what was quoted."""

    quote_id: str
    property_id: str
    room_id: str
    stay: StayDates
    guests: int
    priced: PricedStay
    expires_at: float  # unix seconds
    created_at: float
    terms: CancellationTerms | None  # None only for a quote stored before terms existed

    def is_expired(self, now: float) -> bool:
        return self.expires_at <= now


@dataclass(frozen=True)
class RoomPrice:
    """A room's price for a stay, with the terms it is sold on."""

    room_id: str
    priced: PricedStay
    terms: CancellationTerms


def stay_of(check_in: date, check_out: date, *, max_nights: int) -> StayDates:
    """The stay to price; ``invalid_stay`` unless it has between one and ``max_nights`` nights."""
    if check_out <= check_in:
        raise InvalidStay(message="check_out must be after check_in")
    stay = StayDates(check_in, check_out)
    if stay.nights > max_nights:
        raise InvalidStay(message=f"a stay may last at most {max_nights} nights")
    return stay


def _plan_of(row: Row[Any]) -> RatePlan:
    return RatePlan(**{c.name: row._mapping[c.name] for c in rate_plans.columns})


# Statements are built once, at import: constructing one on every call cost more CPU than running it.
SELECT_RATE_PLANS_OF_ROOMS = select(rate_plans).where(
    rate_plans.c.property_id == bindparam("property_id"),
    rate_plans.c.room_id.in_(bindparam("room_ids", expanding=True)),
)


async def price_rooms(
    *,
    db: Database,
    tracer: Tracer,
    property_id: str,
    room_ids: Sequence[str],
    stay: StayDates,
    guests: int,
) -> list[RoomPrice]:
    """Price the stay in every listed room of the property that has a rate plan, in request order."""
    with tracer.start_as_current_span("pricing.price_rooms") as span:
        span.set_attribute("booking.property_id", property_id)
        plans = await _plans(db, property_id, room_ids)
        priced = [_room_price(plan, stay, guests) for plan in plans]
        span.set_attribute("pricing.rooms_priced", len(priced))
        return priced


async def _plans(db: Database, property_id: str, room_ids: Sequence[str]) -> list[RatePlan]:
    """The rate plans of the listed rooms of a property, in request order (rooms without one left out)."""
    async with db.read() as conn:
        return await _plans_in(conn, property_id, room_ids)


async def _plans_in(conn: Any, property_id: str, room_ids: Sequence[str]) -> list[RatePlan]:
    wanted = list(dict.fromkeys(room_ids))
    rows = await conn.execute(SELECT_RATE_PLANS_OF_ROOMS, {"property_id": property_id, "room_ids": wanted})
    plans = {plan.room_id: plan for plan in map(_plan_of, rows)}
    return [plans[rid] for rid in wanted if rid in plans]


def _room_price(plan: RatePlan, stay: StayDates, guests: int) -> RoomPrice:
    priced = price_stay(plan, stay, guests)
    return RoomPrice(plan.room_id, priced, cancellation_terms(plan, stay, priced))


def _new_quote(property_id: str, stay: StayDates, guests: int, price: RoomPrice, *, ttl_seconds: float,
               now: float) -> Quote:  # fmt: skip
    return Quote(
        quote_id=ids.new_quote_id(),
        property_id=property_id,
        room_id=price.room_id,
        stay=stay,
        guests=guests,
        priced=price.priced,
        expires_at=now + ttl_seconds,
        created_at=now,
        terms=price.terms,
    )


async def quote_rooms(
    *,
    db: Database,
    property_id: str,
    prices: Sequence[RoomPrice],
    stay: StayDates,
    guests: int,
    ttl_seconds: float,
    now: float,
) -> list[Quote]:
    """Keep a quote of each priced room (one write for all): the availability answer offers each
    room at a price the booking is then charged exactly, while the quote lasts."""
    quotes_ = [_new_quote(property_id, stay, guests, p, ttl_seconds=ttl_seconds, now=now) for p in prices]
    if quotes_:
        async with db.write() as conn:
            await conn.execute(INSERT_QUOTE, [_row_of(q) for q in quotes_])
    return quotes_


INSERT_QUOTE = insert(quotes)
SELECT_QUOTE = select(quotes).where(quotes.c.quote_id == bindparam("quote_id"))


async def create_quote(
    *,
    db: Database,
    tracer: Tracer,
    property_id: str,
    room_ids: Sequence[str],
    stay: StayDates,
    guests: int,
    ttl_seconds: float,
    now: float,
    rng: random.Random | None = None,
) -> Quote:
    """Price the stay in the cheapest of the listed rooms (one room: that room) and store the quote.
    Rooms that cost the same are chosen between at random, so that guests asking at the same moment
    spread over them instead of all racing for one. ``room_not_priced`` if none has a rate plan."""
    plans = await _plans(db, property_id, room_ids)
    if not plans:
        room = room_ids[0] if len(room_ids) == 1 else None
        raise NotFound(
            "room_not_priced",
            f"room {room} of property {property_id} has no rate plan"
            if room
            else f"no listed room of property {property_id} has a rate plan",
            room_id=room,
        )
    with tracer.start_as_current_span("pricing.price_stay") as span:
        prices = [_room_price(plan, stay, guests) for plan in plans]
        cheapest = min(p.priced.total.minor for p in prices)
        chosen = (rng or random).choice([p for p in prices if p.priced.total.minor == cheapest])
        quote = _new_quote(property_id, stay, guests, chosen, ttl_seconds=ttl_seconds, now=now)
        _describe(span, quote)
        span.set_attribute("pricing.rooms_priced", len(prices))
        async with db.write() as conn:
            await conn.execute(INSERT_QUOTE, _row_of(quote))
    return quote


def _describe(span: Any, quote: Quote) -> None:
    priced = quote.priced
    span.set_attributes(
        {
            "booking.room_id": quote.room_id,
            "booking.nights": quote.stay.nights,
            "pricing.quote_id": quote.quote_id,
            "pricing.total_minor": priced.total.minor,
            "pricing.currency": priced.total.currency,
            "pricing.rules_applied": priced.rules_applied,
        }
    )


class QuoteExpired(Conflict):
    code = "quote_expired"


class PriceChanged(Conflict):
    code = "price_changed"


async def honour_quote(
    *,
    db: Database,
    tracer: Tracer,
    quote_id: str,
    property_id: str,
    room_id: str | None,
    stay: StayDates,
    guests: int,
    ttl_seconds: float,
    now: float,
) -> Quote:
    """The quote a guest was shown, if it still holds: for the same stay, not expired, and the room's
    rates unchanged (its total priced again today is the quoted total). Otherwise 409
    ``quote_expired``, or 409 ``price_changed`` with the new total and a new quote at that price."""
    # the quote and its room's rate plan in one read (one transaction, not two)
    async with db.read() as conn:
        quote = await _quote_in(conn, quote_id)
        plans = await _plans_in(conn, property_id, [quote.room_id])
    asked = (property_id, stay, guests) + ((room_id,) if room_id is not None else ())
    quoted = (quote.property_id, quote.stay, quote.guests) + ((quote.room_id,) if room_id is not None else ())
    if asked != quoted:
        raise InvalidRequest(
            "quote_mismatch",
            "the quote was issued for another property, room, stay or number of guests",
            quote_id=quote_id,
        )
    with tracer.start_as_current_span("pricing.price_stay") as span:
        _describe(span, quote)
        if quote.is_expired(now):
            raise QuoteExpired(message=f"quote {quote_id} has expired; search again", quote_id=quote_id)
        if not plans:
            raise NotFound("room_not_priced", f"room {quote.room_id} has no rate plan", room_id=quote.room_id)
        today = _room_price(plans[0], stay, guests)
        if today.priced.total != quote.priced.total:
            fresh = _new_quote(property_id, stay, guests, today, ttl_seconds=ttl_seconds, now=now)
            async with db.write() as conn:
                await conn.execute(INSERT_QUOTE, _row_of(fresh))
            raise PriceChanged(
                message="the rates changed since this quote was issued",
                quote_id=fresh.quote_id,
                quoted_total_minor=quote.priced.total.minor,
                total_minor=fresh.priced.total.minor,
                currency=fresh.priced.total.currency,
            )
    return quote


async def get_quote(*, db: Database, quote_id: str) -> Quote:
    """A stored quote, expired or not; ``quote_not_found`` if there is none with this id."""
    async with db.read() as conn:
        return await _quote_in(conn, quote_id)


async def _quote_in(conn: Any, quote_id: str) -> Quote:
    row = (await conn.execute(SELECT_QUOTE, {"quote_id": quote_id})).first()
    if row is None:
        raise NotFound("quote_not_found", f"no quote {quote_id}", quote_id=quote_id)
    return _quote_of(row._mapping)


def _row_of(quote: Quote) -> dict[str, object]:
    priced = quote.priced
    lines = [{"night": n.night.isoformat(), "amount_minor": n.amount_minor, "rules": n.rules} for n in priced.nights]
    return {
        "quote_id": quote.quote_id,
        "property_id": quote.property_id,
        "room_id": quote.room_id,
        "check_in": quote.stay.check_in,
        "check_out": quote.stay.check_out,
        "guests": quote.guests,
        "total_minor": priced.total.minor,
        "currency": priced.total.currency,
        "taxes_minor": priced.taxes.minor,
        "lines": json.dumps(lines),
        "rules_applied": json.dumps(priced.rules_applied),
        "terms": json.dumps(quote.terms.as_dict()) if quote.terms else None,
        "expires_at": quote.expires_at,
        "created_at": quote.created_at,
    }


def _quote_of(row: RowMapping) -> Quote:
    currency = row["currency"]
    total = Money(row["total_minor"], currency)
    taxes = Money(row["taxes_minor"], currency)
    nights = [
        NightPrice(date.fromisoformat(line["night"]), line["amount_minor"], line["rules"])
        for line in json.loads(row["lines"])
    ]
    return Quote(
        quote_id=row["quote_id"],
        property_id=row["property_id"],
        room_id=row["room_id"],
        stay=StayDates(row["check_in"], row["check_out"]),
        guests=row["guests"],
        priced=PricedStay(nights, total - taxes, taxes, total, json.loads(row["rules_applied"])),
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        terms=CancellationTerms.from_dict(json.loads(row["terms"])) if row["terms"] else None,
    )
