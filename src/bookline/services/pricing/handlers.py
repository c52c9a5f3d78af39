"""What pricing-engine does: price the rooms of a property for a stay, issue quotes, read them back.

Plain async functions with keyword-only dependencies; they raise domain errors and know nothing
of HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from opentelemetry.trace import Tracer
from sqlalchemy import Row, RowMapping, bindparam, insert, select

from bookline.adapters.db import Database
from bookline.domain import ids
from bookline.domain.errors import InvalidStay, NotFound
from bookline.domain.money import Money
from bookline.domain.pricing import NightPrice, PricedStay, RatePlan, price_stay
from bookline.domain.stay import StayDates
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

    def is_expired(self, now: float) -> bool:
        return self.expires_at <= now


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
) -> list[tuple[str, PricedStay]]:
    """Price the stay in every listed room of the property that has a rate plan, in request order."""
    with tracer.start_as_current_span("pricing.price_rooms") as span:
        span.set_attribute("booking.property_id", property_id)
        wanted = list(dict.fromkeys(room_ids))
        async with db.read() as conn:
            rows = await conn.execute(SELECT_RATE_PLANS_OF_ROOMS, {"property_id": property_id, "room_ids": wanted})
            plans = {plan.room_id: plan for plan in map(_plan_of, rows)}
        priced = [(rid, price_stay(plans[rid], stay, guests)) for rid in wanted if rid in plans]
        span.set_attribute("pricing.rooms_priced", len(priced))
        return priced


SELECT_RATE_PLAN = select(rate_plans).where(
    rate_plans.c.room_id == bindparam("room_id"), rate_plans.c.property_id == bindparam("property_id")
)
INSERT_QUOTE = insert(quotes)


async def create_quote(
    *,
    db: Database,
    tracer: Tracer,
    property_id: str,
    room_id: str,
    stay: StayDates,
    guests: int,
    ttl_seconds: float,
    now: float,
) -> Quote:
    """Price the stay in one room and store the quote; ``room_not_priced`` if it has no rate plan."""
    async with db.read() as conn:
        row = (await conn.execute(SELECT_RATE_PLAN, {"room_id": room_id, "property_id": property_id})).first()
    if row is None:
        raise NotFound(
            "room_not_priced",
            f"room {room_id} of property {property_id} has no rate plan",
            room_id=room_id,
        )
    with tracer.start_as_current_span("pricing.price_stay") as span:
        priced = price_stay(_plan_of(row), stay, guests)
        quote = Quote(
            quote_id=ids.new_quote_id(),
            property_id=property_id,
            room_id=room_id,
            stay=stay,
            guests=guests,
            priced=priced,
            expires_at=now + ttl_seconds,
            created_at=now,
        )
        span.set_attributes(
            {
                "booking.room_id": room_id,
                "booking.nights": stay.nights,
                "pricing.quote_id": quote.quote_id,
                "pricing.total_minor": priced.total.minor,
                "pricing.currency": priced.total.currency,
                "pricing.rules_applied": priced.rules_applied,
            }
        )
        async with db.write() as conn:
            await conn.execute(INSERT_QUOTE, _row_of(quote))
    return quote


SELECT_QUOTE = select(quotes).where(quotes.c.quote_id == bindparam("quote_id"))


async def get_quote(*, db: Database, quote_id: str) -> Quote:
    """A stored quote, expired or not; ``quote_not_found`` if there is none with this id."""
    async with db.read() as conn:
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
    )
