"""The work of availability-service: search free rooms, place, commit, release and restore holds.

A hold is the reservation lock: one ``room_night_claims`` row per night of the stay, with an expiry.
The primary key (room_id, night) of that table is the one guard against double booking; there is no
check-then-insert. Committing a hold turns its claims into booked nights only while it is still valid
(fencing), so a hold that outlived its lease can never become a booking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from opentelemetry import trace
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bookline.adapters.db import Database
from bookline.domain.errors import HoldExpired, InvalidRequest, LockContention, NotFound
from bookline.domain.stay import StayDates
from bookline.services.availability import statements as sql
from bookline.services.availability.tables import properties, rooms


@dataclass(frozen=True)
class Guards:
    """Test-only switches; production always runs with both guards on."""

    fencing: bool = True


def _now() -> float:
    return time.time()


async def list_properties(*, db: Database, city: str | None, limit: int, offset: int) -> list[dict]:
    room_count = (
        select(func.count())
        .where(rooms.c.property_id == properties.c.property_id)
        .scalar_subquery()
        .label("room_count")
    )
    query = select(properties, room_count).order_by(properties.c.property_id).limit(limit).offset(offset)
    if city:
        query = query.where(func.lower(properties.c.city) == city.lower())
    async with db.read() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def get_property(*, db: Database, property_id: str) -> dict:
    async with db.read() as conn:
        row = (await conn.execute(select(properties).where(properties.c.property_id == property_id))).first()
        if row is None:
            raise NotFound("property_not_found", f"no property {property_id}")
        room_rows = await conn.execute(
            select(rooms.c.room_id, rooms.c.name, rooms.c.room_type, rooms.c.capacity)
            .where(rooms.c.property_id == property_id)
            .order_by(rooms.c.room_id)
        )
        return {**row._mapping, "rooms": [dict(r._mapping) for r in room_rows]}


async def search(
    *,
    db: Database,
    property_id: str,
    stay: StayDates,
    guests: int,
    room_id: str | None = None,
    room_type: str | None = None,
) -> dict:
    """The rooms of a property (or the one room, or the rooms of the type, asked for) that fit the
    guests and have no live claim on any night of the stay. ``max_capacity`` tells a caller whether the
    guests fit any of those rooms at all."""
    span = trace.get_current_span()
    now = _now()
    async with db.read() as conn:
        all_rooms = (
            await conn.execute(
                sql.SELECT_ROOMS_WITH_FREE_FLAG,
                {"property_id": property_id, "check_in": stay.check_in, "check_out": stay.check_out, "now": now},
            )
        ).all()
        # a property has rooms: only when none are found does it matter whether the property exists
        if not all_rooms and (await conn.execute(sql.SELECT_PROPERTY_ID, {"property_id": property_id})).first() is None:
            raise NotFound("property_not_found", f"no property {property_id}")
    free = [
        {"room_id": r.room_id, "name": r.name, "room_type": r.room_type, "capacity": r.capacity}
        for r in all_rooms
        if r[4] and r.capacity >= guests
    ]
    if room_id is not None:
        all_rooms = [r for r in all_rooms if r.room_id == room_id]
        if not all_rooms:
            raise NotFound("room_not_found", f"no room {room_id} in property {property_id}")
        free = [r for r in free if r["room_id"] == room_id]
    if room_type is not None:
        all_rooms = [r for r in all_rooms if r.room_type == room_type]
        if not all_rooms:
            raise NotFound(
                "room_type_not_found", f"property {property_id} has no {room_type} room", room_type=room_type
            )
        free = [r for r in free if r["room_type"] == room_type]
    span.set_attribute("availability.rooms_scanned", len(all_rooms))
    span.set_attribute("booking.available_count", len(free))
    return {
        "property_id": property_id,
        "check_in": stay.check_in.isoformat(),
        "check_out": stay.check_out.isoformat(),
        "guests": guests,
        "max_capacity": max((r.capacity for r in all_rooms), default=0),
        "rooms": free,
    }


def _hold_view(row: Any) -> dict:
    return {
        "reservation_id": row.reservation_id,
        "property_id": row.property_id,
        "room_id": row.room_id,
        "check_in": row.check_in.isoformat(),
        "check_out": row.check_out.isoformat(),
        "status": row.status,
        "expires_at": row.expires_at,
        "nights": (row.check_out - row.check_in).days,
    }


async def get_hold(*, db: Database, reservation_id: str) -> dict:
    async with db.read() as conn:
        row = (await conn.execute(sql.SELECT_HOLD, {"reservation": reservation_id})).first()
    if row is None:
        raise NotFound("hold_not_found", f"no hold {reservation_id}")
    return _hold_view(row)


async def place_hold(
    *,
    db: Database,
    reservation_id: str,
    property_id: str,
    room_id: str,
    stay: StayDates,
    ttl_seconds: float,
) -> dict:
    """Claim every night of the stay for one room, or raise LockContention naming the competitor."""
    span = trace.get_current_span()
    nights = list(stay.each_night())
    span.set_attribute("booking.reservation_id", reservation_id)
    span.set_attribute("booking.room_id", room_id)
    span.set_attribute("hold.nights", len(nights))
    span.set_attribute("hold.ttl_ms", int(ttl_seconds * 1000))
    now = _now()
    expires_at = now + ttl_seconds
    try:
        async with db.write() as conn:
            # the room's property, and the hold this reservation already has (if any), in one query
            room = (
                await conn.execute(sql.SELECT_ROOM_WITH_HOLD, {"room_id": room_id, "reservation": reservation_id})
            ).first()
            if room is None or room.room_property_id != property_id:
                raise NotFound("room_not_found", f"no room {room_id} in property {property_id}")
            existing = room if room.reservation_id is not None else None
            if existing is not None:
                if (existing.room_id, existing.check_in, existing.check_out) != (
                    room_id,
                    stay.check_in,
                    stay.check_out,
                ):
                    raise InvalidRequest("reservation_id_reused", "this reservation already holds other nights")
                span.set_attribute("booking.lock_acquired", existing.status in ("held", "committed"))
                return _hold_view(existing)
            # an expired hold no longer takes its night: clear it so the key admits the new claim
            await conn.execute(sql.DELETE_EXPIRED_CLAIMS_OF_NIGHTS, {"room_id": room_id, "nights": nights, "now": now})
            await conn.execute(
                sql.INSERT_CLAIM,
                [
                    {
                        "room_id": room_id,
                        "night": night,
                        "reservation_id": reservation_id,
                        "kind": "hold",
                        "expires_at": expires_at,
                    }
                    for night in nights
                ],
            )
            await conn.execute(
                sql.INSERT_HOLD,
                {
                    "reservation_id": reservation_id,
                    "property_id": property_id,
                    "room_id": room_id,
                    "check_in": stay.check_in,
                    "check_out": stay.check_out,
                    "status": "held",
                    "expires_at": expires_at,
                    "created_at": now,
                    "updated_at": now,
                },
            )
    except IntegrityError:
        competitor = await _competitor(db, room_id, nights, now)
        span.set_attribute("booking.lock_acquired", False)
        raise LockContention(
            "lock_contention",
            "another reservation holds or has booked these nights",
            competing_reservation=competitor["reservation_id"],
            contention_reason=competitor["reason"],
        ) from None
    span.set_attribute("booking.lock_acquired", True)
    return {
        "reservation_id": reservation_id,
        "property_id": property_id,
        "room_id": room_id,
        "check_in": stay.check_in.isoformat(),
        "check_out": stay.check_out.isoformat(),
        "status": "held",
        "expires_at": expires_at,
        "nights": len(nights),
    }


async def _competitor(db: Database, room_id: str, nights: list[date], now: float) -> dict:
    async with db.read() as conn:
        row = (
            await conn.execute(
                sql.SELECT_FIRST_LIVE_CLAIM_OF_NIGHTS, {"room_id": room_id, "nights": nights, "now": now}
            )
        ).first()
    if row is None:  # the competitor finished or expired between our insert and this look-up
        return {"reservation_id": None, "reason": "concurrent_claim"}
    reason = "already_booked" if row.kind == "booked" else "held_by_other_reservation"
    return {"reservation_id": row.reservation_id, "reason": reason}


async def commit_hold(*, db: Database, reservation_id: str, guards: Guards = Guards()) -> dict:
    """Turn a valid hold into booked nights; a hold past its expiry is rejected (fencing)."""
    span = trace.get_current_span()
    span.set_attribute("booking.reservation_id", reservation_id)
    now = _now()
    try:
        return await _commit(db, reservation_id, now, guards)
    except _StaleHold as stale:
        span.add_event("hold_expired", {"booking.reservation_id": reservation_id, "hold.status": stale.status})
        raise await expire_stale_hold(db=db, reservation_id=reservation_id, status=stale.status) from None


async def _commit(db: Database, reservation_id: str, now: float, guards: Guards) -> dict:
    async with db.write() as conn:
        hold = (await conn.execute(sql.SELECT_HOLD, {"reservation": reservation_id})).first()
        if hold is None:
            raise NotFound("hold_not_found", f"no hold {reservation_id}")
        if hold.status == "committed":
            return _hold_view(hold)
        nights = (hold.check_out - hold.check_in).days
        valid = hold.status == "held" and (hold.expires_at > now or not guards.fencing)
        claimed = 0
        if valid:
            book = sql.BOOK_HELD_CLAIMS if guards.fencing else sql.BOOK_HELD_CLAIMS_UNFENCED
            result = await conn.execute(book, {"reservation": reservation_id, "now": now})
            claimed = result.rowcount
        if not valid or claimed != nights:
            # raising rolls the partial update back; expire_stale_hold records the expiry
            raise _StaleHold(hold.status)
        await conn.execute(sql.SET_HOLD_STATUS, {"reservation": reservation_id, "new_status": "committed", "now": now})
    return {**_hold_view(hold), "status": "committed"}


class _StaleHold(Exception):
    def __init__(self, status: str) -> None:
        self.status = status


async def expire_stale_hold(*, db: Database, reservation_id: str, status: str) -> HoldExpired:
    """Record that a hold could not be committed, free what it still claims, and say why."""
    now = _now()
    async with db.write() as conn:
        await conn.execute(sql.DELETE_HELD_CLAIMS, {"reservation": reservation_id})
        await conn.execute(sql.EXPIRE_HELD_HOLD, {"reservation": reservation_id, "now": now})
    return HoldExpired(
        "hold_expired",
        "the hold expired before the booking could be confirmed",
        hold_status="expired" if status == "held" else status,
    )


async def release_hold(*, db: Database, reservation_id: str) -> dict:
    """Give back the nights of a hold that was not committed. Nothing to undo is not an error."""
    now = _now()
    async with db.write() as conn:
        hold = (await conn.execute(sql.SELECT_HOLD, {"reservation": reservation_id})).first()
        if hold is None or hold.status != "held":
            return {"reservation_id": reservation_id, "released": False, "status": hold.status if hold else None}
        await conn.execute(sql.DELETE_HELD_CLAIMS, {"reservation": reservation_id})
        await conn.execute(sql.SET_HOLD_STATUS, {"reservation": reservation_id, "new_status": "released", "now": now})
    return {"reservation_id": reservation_id, "released": True, "status": "released"}


async def restore_inventory(*, db: Database, reservation_id: str) -> dict:
    """Give back the booked nights of a reservation (a cancellation or a failed confirmation)."""
    now = _now()
    async with db.write() as conn:
        hold = (await conn.execute(sql.SELECT_HOLD, {"reservation": reservation_id})).first()
        if hold is None:
            return {"reservation_id": reservation_id, "restored_nights": 0, "status": None}
        result = await conn.execute(sql.DELETE_ALL_CLAIMS, {"reservation": reservation_id})
        status = hold.status
        if status in ("held", "committed"):
            status = "released"
            await conn.execute(sql.SET_HOLD_STATUS, {"reservation": reservation_id, "new_status": status, "now": now})
    return {"reservation_id": reservation_id, "restored_nights": result.rowcount, "status": status}


async def sweep_expired_holds(*, db: Database) -> list[str]:
    """Mark holds past their expiry as expired and free their claims; returns their reservations."""
    now = _now()
    async with db.write() as conn:
        expired = [r.reservation_id for r in await conn.execute(sql.SELECT_EXPIRED_HOLD_IDS, {"now": now})]
        if not expired:
            return []
        await conn.execute(sql.DELETE_HELD_CLAIMS_OF_RESERVATIONS, {"reservations": expired})
        await conn.execute(sql.EXPIRE_HOLDS, {"reservations": expired, "now": now})
    return expired
