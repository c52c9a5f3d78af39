"""The work of confirmation-service: turn a paid hold into a booking, and cancel bookings.

A booking is created only after availability-service committed the hold (fencing); the booking row
and its ``booking.confirmed`` outbox event are written in one transaction, so an event exists if and
only if the booking does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from opentelemetry import trace
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from bookline.adapters.db import Database
from bookline.domain.codes import new_confirmation_code
from bookline.domain.errors import NotFound
from bookline.services.availability.client import AvailabilityClient
from bookline.services.common.outbox import add_to_outbox
from bookline.services.confirmation.tables import bookings, outbox

CODE_ATTEMPTS = 5


@dataclass(frozen=True)
class Confirmation:
    booking_id: str
    reservation_id: str
    property_id: str
    room_id: str
    check_in: date
    check_out: date
    user_id: str
    total_minor: int
    currency: str
    payment_transaction_id: str


def _view(row: Any) -> dict:
    data = dict(row._mapping)
    data["check_in"] = data["check_in"].isoformat()
    data["check_out"] = data["check_out"].isoformat()
    return data


def _event(row: dict) -> dict:
    keys = (
        "booking_id",
        "reservation_id",
        "confirmation_code",
        "user_id",
        "property_id",
        "room_id",
        "check_in",
        "check_out",
        "total_minor",
        "currency",
    )
    return {k: row[k] for k in keys}


# Statements are built once, at import: constructing one on every call cost more CPU than running it.
SELECT_BOOKING = select(bookings).where(bookings.c.reservation_id == bindparam("reservation"))


async def get_confirmation(*, db: Database, reservation_id: str) -> dict:
    async with db.read() as conn:
        row = (await conn.execute(SELECT_BOOKING, {"reservation": reservation_id})).first()
    if row is None:
        raise NotFound("confirmation_not_found", f"no confirmed booking for {reservation_id}")
    return _view(row)


async def confirm(*, db: Database, availability: AvailabilityClient, request: Confirmation) -> dict:
    """Commit the hold, then create the booking with its code and the outbox event. Idempotent."""
    span = trace.get_current_span()
    span.set_attribute("booking.reservation_id", request.reservation_id)
    span.set_attribute("booking.id", request.booking_id)
    try:
        existing = await get_confirmation(db=db, reservation_id=request.reservation_id)
    except NotFound:
        existing = None
    if existing is not None:
        span.set_attribute("booking.confirmation_code", existing["confirmation_code"])
        return existing
    # raises HoldExpired (409) when the hold is no longer valid
    await availability.commit_hold(request.reservation_id)
    for _ in range(CODE_ATTEMPTS):
        try:
            row = await _insert_booking(db, request, new_confirmation_code())
            break
        except IntegrityError:
            # either a concurrent confirm of the same reservation won, or a code collided
            try:
                row = await get_confirmation(db=db, reservation_id=request.reservation_id)
                break
            except NotFound:
                continue
    else:  # pragma: no cover - 31^8 codes make this astronomically unlikely
        raise RuntimeError("could not allocate a unique confirmation code")
    span.set_attribute("booking.confirmation_code", row["confirmation_code"])
    return row


INSERT_BOOKING = insert(bookings)


async def _insert_booking(db: Database, request: Confirmation, code: str) -> dict:
    now = time.time()
    values = {
        "reservation_id": request.reservation_id,
        "booking_id": request.booking_id,
        "confirmation_code": code,
        "status": "confirmed",
        "user_id": request.user_id,
        "property_id": request.property_id,
        "room_id": request.room_id,
        "check_in": request.check_in,
        "check_out": request.check_out,
        "total_minor": request.total_minor,
        "currency": request.currency,
        "payment_transaction_id": request.payment_transaction_id,
        "created_at": now,
        "updated_at": now,
    }
    async with db.write() as conn:
        await conn.execute(INSERT_BOOKING, values)
        row = {**values, "check_in": request.check_in.isoformat(), "check_out": request.check_out.isoformat()}
        await add_to_outbox(
            conn,
            outbox,
            topic="booking.confirmed",
            payload=_event(row),
            event_id=f"{request.booking_id}-confirmed",
        )
    return row


# a reservation id is passed as ``reservation``: SQLAlchemy reserves column names for the SET clause
CANCEL_BOOKING = (
    update(bookings)
    .where(bookings.c.reservation_id == bindparam("reservation"))
    .values(status="cancelled", updated_at=bindparam("now"))
)


async def cancel(*, db: Database, reservation_id: str) -> dict:
    """Cancel a confirmed booking: its status and its outbox event, in one transaction. Idempotent.
    booking-service then gives the nights back at availability-service, which checks here that the
    booking is cancelled."""
    span = trace.get_current_span()
    span.set_attribute("booking.reservation_id", reservation_id)
    now = time.time()
    async with db.write() as conn:
        row = (await conn.execute(SELECT_BOOKING, {"reservation": reservation_id})).first()
        if row is None:
            raise NotFound("confirmation_not_found", f"no confirmed booking for {reservation_id}")
        if row.status == "confirmed":
            await conn.execute(CANCEL_BOOKING, {"reservation": reservation_id, "now": now})
            await add_to_outbox(
                conn,
                outbox,
                topic="booking.cancelled",
                payload=_event(_view(row)),
                event_id=f"{row.booking_id}-cancelled",
            )
    return await get_confirmation(db=db, reservation_id=reservation_id)
