"""Bookings and their life: statuses move forward only, and every outcome has a name."""

from __future__ import annotations

from enum import StrEnum

from bookline.domain.errors import InvalidTransition


class BookingStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_FORWARD = {
    BookingStatus.PENDING: {BookingStatus.CONFIRMED, BookingStatus.FAILED},
    BookingStatus.CONFIRMED: {BookingStatus.CANCELLED},
    BookingStatus.FAILED: set(),
    BookingStatus.CANCELLED: set(),
}


def check_transition(current: BookingStatus, new: BookingStatus) -> None:
    """Raise unless a booking may move from ``current`` to ``new`` (pending -> confirmed -> cancelled,
    or pending -> failed)."""
    if new not in _FORWARD[current]:
        raise InvalidTransition(message=f"a {current} booking cannot become {new}")


def may_become(new: BookingStatus) -> list[str]:
    """The statuses a booking may have for ``finish`` to give it ``new``: its predecessors, and
    ``new`` itself (finishing twice the same way changes nothing)."""
    return [new.value, *(s.value for s, nexts in _FORWARD.items() if new in nexts)]


class Outcome(StrEnum):
    """The value of ``booking.outcome`` on the booking.create span."""

    CONFIRMED = "confirmed"
    UNAVAILABLE = "unavailable"
    CONTENTION = "contention"
    DECLINED = "declined"
    PAYMENT_ERROR = "payment_error"
    EXPIRED = "expired"
    FAILED = "failed"


class Source(StrEnum):
    WEB = "web"
    MOBILE = "mobile"
    API = "api"
