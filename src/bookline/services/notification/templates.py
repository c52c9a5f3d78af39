"""The plain-text e-mails of notification-service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from bookline.domain.money import Money

# ISO 4217 currencies without minor units among those a property may price in
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"})


class NotificationKind(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class BookingNotice:
    """What a booking event tells notification-service (the body of the queue message)."""

    booking_id: str
    reservation_id: str
    confirmation_code: str
    user_id: str
    property_id: str
    room_id: str
    check_in: date
    check_out: date
    total: Money

    @property
    def nights(self) -> int:
        return (self.check_out - self.check_in).days


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str


def format_money(amount: Money) -> str:
    """``12,345 JPY`` or ``1,234.50 EUR`` from integer minor units (no float on the way)."""
    decimals = 0 if amount.currency in ZERO_DECIMAL_CURRENCIES else 2
    sign = "-" if amount.minor < 0 else ""
    units, cents = divmod(abs(amount.minor), 10**decimals)
    number = f"{units:,}" if decimals == 0 else f"{units:,}.{cents:0{decimals}d}"
    return f"{sign}{number} {amount.currency}"


def format_date(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"  # e.g. "Fri 14 Mar 2025", whatever the locale


def render(notice: BookingNotice, kind: NotificationKind) -> RenderedMail:
    nights = f"{notice.nights} night" + ("" if notice.nights == 1 else "s")
    stay = (
        f"  Confirmation code: {notice.confirmation_code}\n"
        f"  Check-in:          {format_date(notice.check_in)}\n"
        f"  Check-out:         {format_date(notice.check_out)} ({nights})\n"
        f"  Property:          {notice.property_id}\n"
        f"  Room:              {notice.room_id}\n"
        f"  Total:             {format_money(notice.total)}\n"
    )
    if kind is NotificationKind.CONFIRMED:
        subject = f"Your booking {notice.confirmation_code} is confirmed"
        text = (
            "Hello,\n\n"
            "your booking is confirmed. We look forward to welcoming you.\n\n"
            f"{stay}\n"
            "Please keep your confirmation code at hand when you arrive.\n\n"
            "Bookline\n"
        )
    else:
        subject = f"Your booking {notice.confirmation_code} is cancelled"
        text = (
            "Hello,\n\n"
            "your booking has been cancelled. Any payment taken for it is refunded to your card.\n\n"
            f"{stay}\n"
            "Bookline\n"
        )
    return RenderedMail(subject, text)
