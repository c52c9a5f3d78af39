"""What notification-service does with a booking event: at most one e-mail per (booking, kind).

The sent-notification log is the guard: its primary key on (booking_id, kind) admits one row per
booking and kind. The e-mail is sent before the row is written, so a crash in between can only send
the same e-mail again, under the same message key (the same ``.eml`` file), never a different one.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import Any

from opentelemetry.trace import SpanKind, Tracer
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from bookline.adapters.db import Database
from bookline.adapters.mail import Mailer
from bookline.domain import ids
from bookline.domain.money import Money
from bookline.redaction import looks_like_card_number
from bookline.services.notification.tables import sent_notifications
from bookline.services.notification.templates import (
    BookingNotice,
    NotificationKind,
    render,
)

KIND_BY_TOPIC = {
    "booking.confirmed": NotificationKind.CONFIRMED,
    "booking.cancelled": NotificationKind.CANCELLED,
}
GUEST_MAIL_DOMAIN = "guests.bookline.example"
# every id in the one format the services check (an id ends up in a mail file name)
_BOOKING_ID = re.compile(ids.BOOKING_ID)
_RESERVATION_ID = re.compile(ids.RESERVATION_ID)
_MAILBOX_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidNotice(ValueError):
    """A booking event that can never be notified (missing or malformed fields)."""


class Outcome(StrEnum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # the log already had (booking, kind): no second e-mail


def parse_notice(body: Mapping[str, Any]) -> BookingNotice:
    """The booking event of a queue message; raises :class:`InvalidNotice` if it is malformed."""
    try:
        notice = BookingNotice(
            booking_id=_identifier(body, "booking_id", _BOOKING_ID),
            reservation_id=_identifier(body, "reservation_id", _RESERVATION_ID),
            confirmation_code=_text(body, "confirmation_code"),
            user_id=_text(body, "user_id"),
            property_id=_text(body, "property_id"),
            room_id=_text(body, "room_id"),
            check_in=date.fromisoformat(_text(body, "check_in")),
            check_out=date.fromisoformat(_text(body, "check_out")),
            total=Money(_minor(body), _text(body, "currency")),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidNotice(str(exc)) from None
    if notice.check_out <= notice.check_in:
        raise InvalidNotice("check_out must be after check_in")
    return notice


def guest_address(user_id: str) -> str:
    """The guest's mailbox. Bookline keeps no e-mail address (no PII), so it is derived from the
    opaque user id; it goes into the e-mail and nowhere else (no span, log or row)."""
    if _MAILBOX_SAFE.fullmatch(user_id):
        local = user_id
    else:  # an id that cannot be a mailbox name still gets a stable, private one
        local = hashlib.sha256(user_id.encode()).hexdigest()[:24]
    return f"guest-{local}@{GUEST_MAIL_DOMAIN}"


def message_key(booking_id: str, kind: NotificationKind) -> str:
    """One e-mail file per booking and kind."""
    return f"{booking_id}-{kind}"


# Statements are built once, at import: constructing one on every call cost more CPU than running it.
SELECT_SENT_NOTIFICATION = select(sent_notifications.c.message_id).where(
    sent_notifications.c.booking_id == bindparam("booking_id"), sent_notifications.c.kind == bindparam("kind")
)
INSERT_SENT_NOTIFICATION = insert(sent_notifications)


async def notify(
    notice: BookingNotice,
    kind: NotificationKind,
    *,
    message_id: str,
    db: Database,
    mailer: Mailer,
    tracer: Tracer,
) -> Outcome:
    """Send the e-mail of ``kind`` for a booking unless the log says it was sent already."""
    async with db.read() as conn:
        already = (
            await conn.execute(SELECT_SENT_NOTIFICATION, {"booking_id": notice.booking_id, "kind": str(kind)})
        ).first()
    if already is not None:
        return Outcome.DUPLICATE

    mail = render(notice, kind)
    with tracer.start_as_current_span(
        "notification.send_email",
        kind=SpanKind.CLIENT,
        attributes={"notification.kind": str(kind), "booking.id": notice.booking_id},
    ):
        await mailer.send(
            message_key=message_key(notice.booking_id, kind),
            to=guest_address(notice.user_id),
            subject=mail.subject,
            text=mail.text,
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


def _minor(body: Mapping[str, Any]) -> int:
    value = body.get("total_minor")
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidNotice("total_minor is not an integer")
    return value
