"""What notification-service does with a booking event: at most one e-mail per (booking, kind).

The sent-notification log is the guard: its primary key on (booking_id, kind) admits one row per
booking and kind. The e-mail is sent before the row is written, so a crash in between can only send
the same e-mail again, under the same message key (the same ``.eml`` file), never a different one.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from email.utils import formataddr
from enum import StrEnum
from typing import Any, Protocol

from opentelemetry.trace import SpanKind, Tracer
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from bookline.adapters.db import Database
from bookline.adapters.mail import Mailer
from bookline.domain import ids
from bookline.domain.money import Money
from bookline.domain.terms import CancellationTerms, check_in_at
from bookline.redaction import looks_like_card_number
from bookline.services.notification.tables import sent_notifications
from bookline.services.notification.templates import BookingMail, NightLine, NotificationKind, render

KIND_BY_TOPIC = {
    "booking.confirmed": NotificationKind.CONFIRMED,
    "booking.cancelled": NotificationKind.CANCELLED,
}
# every id in the one format the services check (an id ends up in a mail file name)
_BOOKING_ID = re.compile(ids.BOOKING_ID)
_RESERVATION_ID = re.compile(ids.RESERVATION_ID)


class InvalidNotice(ValueError):
    """A booking event that can never be notified (missing or malformed fields)."""


class Outcome(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # the log already had (booking, kind): no second e-mail


@dataclass(frozen=True)
class BookingEvent:
    """The body of a booking event: ids only (the guest's data never rides on the queue)."""

    booking_id: str
    reservation_id: str


def parse_notice(body: Mapping[str, Any]) -> BookingEvent:
    """The booking event of a queue message; raises :class:`InvalidNotice` if it is malformed."""
    return BookingEvent(
        booking_id=_identifier(body, "booking_id", _BOOKING_ID),
        reservation_id=_identifier(body, "reservation_id", _RESERVATION_ID),
    )


class BookingSource(Protocol):
    """Where the rest of an e-mail comes from: confirmation-service and availability-service."""

    async def notice(self, reservation_id: str) -> dict[str, Any]: ...

    async def get_property(self, property_id: str) -> dict[str, Any]: ...


async def mail_of(event: BookingEvent, source: BookingSource) -> BookingMail:
    """Everything the e-mail says: the booking, its guest and price from confirmation-service, the
    property and room from availability-service (two traced calls)."""
    notice = await source.notice(event.reservation_id)
    place = await source.get_property(notice["property_id"])
    room = next((r for r in place.get("rooms", []) if r["room_id"] == notice["room_id"]), {})
    currency = notice["currency"]
    terms = notice.get("cancellation")
    nights = [
        NightLine(date.fromisoformat(n["night"]), Money(n["amount_minor"], currency)) for n in notice.get("nights", [])
    ]
    total = Money(notice["total_minor"], currency)
    refund = notice.get("refund_minor")
    penalty = notice.get("cancellation_penalty_minor")
    return BookingMail(
        booking_id=event.booking_id,
        confirmation_code=notice["confirmation_code"],
        guest_name=notice["guest"]["name"],
        guest_email=notice["guest"]["email"],
        property_name=place["name"],
        property_address=place.get("address") or place.get("city", ""),
        room_name=room.get("name", notice["room_id"]),
        room_type=notice.get("room_type") or room.get("room_type", ""),
        check_in=date.fromisoformat(notice["check_in"]),
        check_out=date.fromisoformat(notice["check_out"]),
        nights=nights,
        taxes=Money(notice.get("taxes_minor", 0), currency),
        total=total,
        terms=CancellationTerms.from_dict(terms) if terms else free_until_check_in(notice, place, total),
        refund=Money(refund, currency) if refund is not None else None,
        penalty=Money(penalty, currency) if penalty is not None else None,
    )


def free_until_check_in(notice: Mapping[str, Any], place: Mapping[str, Any], total: Money) -> CancellationTerms:
    """The terms of a booking made before terms existed: free cancellation until check-in."""
    zone = place.get("time_zone") or "UTC"
    return CancellationTerms(
        free_cancellation_hours=0,
        free_until=check_in_at(date.fromisoformat(notice["check_in"]), zone),
        penalty=Money.zero(total.currency),
        time_zone=zone,
    )


def message_key(booking_id: str, kind: NotificationKind) -> str:
    """One e-mail file per booking and kind."""
    return f"{booking_id}-{kind}"


# Statements are built once, at import: constructing one on every call cost more CPU than running it.
SELECT_SENT_NOTIFICATION = select(sent_notifications.c.message_id).where(
    sent_notifications.c.booking_id == bindparam("booking_id"), sent_notifications.c.kind == bindparam("kind")
)
INSERT_SENT_NOTIFICATION = insert(sent_notifications)


async def notify(
    notice: BookingEvent,
    kind: NotificationKind,
    *,
    message_id: str,
    db: Database,
    mailer: Mailer,
    tracer: Tracer,
    source: BookingSource,
) -> Outcome:
    """Send the e-mail of ``kind`` for a booking unless the log says it was sent already."""
    async with db.read() as conn:
        already = (
            await conn.execute(SELECT_SENT_NOTIFICATION, {"booking_id": notice.booking_id, "kind": str(kind)})
        ).first()
    if already is not None:
        return Outcome.DUPLICATE

    booking = await mail_of(notice, source)
    mail = render(booking, kind)
    with tracer.start_as_current_span(
        "notification.send_email",
        kind=SpanKind.CLIENT,
        attributes={"notification.kind": str(kind), "booking.id": notice.booking_id},
    ):
        await mailer.send(
            message_key=message_key(notice.booking_id, kind),
            to=formataddr((booking.guest_name, booking.guest_email)),
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
        )
    try:
        async with db.write() as conn:
            await conn.execute(
                INSERT_SENT_NOTIFICATION,
                {
                    "booking_id": notice.booking_id,
                    "kind": str(kind),
                    "message_id": message_id,
                    "reservation_id": notice.reservation_id,
                    "sent_at": time.time(),
                },
            )
    except IntegrityError:
        # another consumer logged it between our check and our insert; both wrote the same file
        return Outcome.DUPLICATE
    return Outcome.SENT


async def list_notifications(*, db: Database, booking_id: str | None, limit: int) -> list[dict[str, Any]]:
    c = sent_notifications.c
    query = select(sent_notifications).order_by(c.sent_at, c.booking_id, c.kind).limit(limit)
    if booking_id is not None:
        query = query.where(c.booking_id == booking_id)
    async with db.read() as conn:
        return [dict(row._mapping) for row in await conn.execute(query)]


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidNotice(f"{key} is missing")
    return value


def _identifier(body: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = _text(body, key)
    if not pattern.match(value) or looks_like_card_number(value):
        raise InvalidNotice(f"{key} is not an identifier")
    return value
