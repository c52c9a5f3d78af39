"""The work of confirmation-service: turn a paid hold into a booking, and cancel bookings.

A booking is created only after availability-service committed the hold (fencing); the booking row
and its ``booking.confirmed`` outbox event are written in one transaction, so an event exists if and
only if the booking does.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from opentelemetry import trace
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from bookline.adapters.db import Database
from bookline.domain.codes import new_confirmation_code
from bookline.domain.errors import InvalidRequest, NotFound
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
    guest: dict[str, str | None] = field(repr=False)  # personal data: never in a span, log or event
    room_type: str | None = None
    details: dict[str, Any] | None = None  # nights with prices, taxes, cancellation terms


# the guest's personal data, and what only the guest's e-mail shows: read by notification-service alone
PRIVATE = ("guest_name", "guest_email", "guest_phone", "details")


def _view(row: Any) -> dict:
    """A booking as booking-service and availability-service read it: no personal data."""
    data = {k: v for k, v in row._mapping.items() if k not in PRIVATE}
    data["check_in"] = data["check_in"].isoformat()
    data["check_out"] = data["check_out"].isoformat()
    return data


def _event(row: Any) -> dict:
    """The body of a booking event: ids only. notification-service asks for the rest over this
    service's API, so no queue message ever carries the guest's data."""
    return {"booking_id": row["booking_id"], "reservation_id": row["reservation_id"]}


# Statements are built once, at import: constructing one on every call cost more CPU than running it.
SELECT_BOOKING = select(bookings).where(bookings.c.reservation_id == bindparam("reservation"))


async def _row(db: Database, reservation_id: str) -> Any:
    async with db.read() as conn:
        row = (await conn.execute(SELECT_BOOKING, {"reservation": reservation_id})).first()
    if row is None:
        raise NotFound("confirmation_not_found", f"no confirmed booking for {reservation_id}")
    return row


async def get_confirmation(*, db: Database, reservation_id: str) -> dict:
    return _view(await _row(db, reservation_id))


async def get_notice(*, db: Database, reservation_id: str) -> dict:
    """Everything the guest's e-mail says about the booking, the guest included."""
    row = await _row(db, reservation_id)
    return {
        **_view(row),
        "guest": {"name": row.guest_name, "email": row.guest_email, "phone": row.guest_phone},
        **(json.loads(row.details) if row.details else {}),
    }


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
        "room_type": request.room_type,
        "guest_name": request.guest["name"],
        "guest_email": request.guest["email"],
        "guest_phone": request.guest.get("phone"),
        "details": json.dumps(request.details) if request.details is not None else None,
        "created_at": now,
        "updated_at": now,
    }
    async with db.write() as conn:
        await conn.execute(INSERT_BOOKING, values)
        await add_to_outbox(
            conn,
            outbox,
            topic="booking.confirmed",
            payload=_event(values),
            event_id=f"{request.booking_id}-confirmed",
        )
    row = {k: v for k, v in values.items() if k not in PRIVATE}
    return {**row, "check_in": request.check_in.isoformat(), "check_out": request.check_out.isoformat()}


# a reservation id is passed as ``reservation``: SQLAlchemy reserves column names for the SET clause
CANCEL_BOOKING = (
    update(bookings)
    .where(bookings.c.reservation_id == bindparam("reservation"))
    .values(
        status="cancelled",
        updated_at=bindparam("now"),
        refund_minor=bindparam("refund"),
        cancellation_penalty_minor=bindparam("penalty"),
    )
)


def _check_amounts(total_minor: int, refund_minor: int | None, penalty_minor: int | None) -> None:
    """What a cancellation refunds and keeps is the whole price, split in two (or not said at all)."""
    if refund_minor is None and penalty_minor is None:
        return
    if refund_minor is None or penalty_minor is None or refund_minor + penalty_minor != total_minor:
        raise InvalidRequest(
            "invalid_cancellation_amounts",
            "refund_minor and cancellation_penalty_minor must both be given and add up to the booking's total",
            total_minor=total_minor,
        )


async def cancel(*, db: Database, reservation_id: str, refund_minor: int | None, penalty_minor: int | None) -> dict:
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
        _check_amounts(row.total_minor, refund_minor, penalty_minor)
        if row.status == "confirmed":
            await conn.execute(
                CANCEL_BOOKING,
                {"reservation": reservation_id, "now": now, "refund": refund_minor, "penalty": penalty_minor},
            )
            await add_to_outbox(
                conn,
                outbox,
                topic="booking.cancelled",
                payload=_event(row._mapping),
                event_id=f"{row.booking_id}-cancelled",
            )
    return await get_confirmation(db=db, reservation_id=reservation_id)
