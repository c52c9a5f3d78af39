"""The guest e-mails of notification-service: a plain-text and an HTML part from Jinja2 templates.

The templates live in ``mail_templates/`` beside this module and are compiled once, at import. Every
value they show is formatted here (money, dates, the cancellation terms), so they only place strings.
The HTML templates autoescape everything (a guest's name is theirs to choose); the text templates do
not escape anything, since a text/plain part is never interpreted as markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape

from bookline.domain.money import Money
from bookline.domain.terms import CancellationTerms

# ISO 4217 currencies without minor units among those a property may price in
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"})
TEMPLATE_DIR = Path(__file__).with_name("mail_templates")


class NotificationKind(StrEnum):
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class NightLine:
    night: date
    amount: Money


@dataclass(frozen=True)
class BookingMail:
    """Everything a guest e-mail says (built by notification-service from confirmation-service and
    availability-service)."""

    booking_id: str
    confirmation_code: str
    guest_name: str
    guest_email: str
    property_name: str
    property_address: str  # one line, e.g. "Rua Augusta 12, 1100-053 Lisbon, Portugal"
    room_name: str  # e.g. "Double 003"
    room_type: str  # e.g. "double"
    check_in: date
    check_out: date
    nights: list[NightLine]  # each night with its price (before taxes)
    taxes: Money
    total: Money
    terms: CancellationTerms
    refund: Money | None = None  # cancellation e-mail only
    penalty: Money | None = None  # cancellation e-mail only


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def format_money(amount: Money) -> str:
    """``12,345 JPY`` or ``1,234.50 EUR`` from integer minor units (no float on the way)."""
    decimals = 0 if amount.currency in ZERO_DECIMAL_CURRENCIES else 2
    sign = "-" if amount.minor < 0 else ""
    units, cents = divmod(abs(amount.minor), 10**decimals)
    number = f"{units:,}" if decimals == 0 else f"{units:,}.{cents:0{decimals}d}"
    return f"{sign}{number} {amount.currency}"


def format_date(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"  # e.g. "Fri 14 Mar 2025", whatever the locale


def format_deadline(moment: datetime, time_zone: str) -> str:
    """``Wed 12 Mar 2025, 15:00 (Europe/Lisbon)``: a local time with the zone it is in."""
    return f"{format_date(moment.date())}, {moment:%H:%M} ({time_zone})"


def cancellation_terms_text(terms: CancellationTerms) -> str:
    """The terms as one sentence, the deadline in the property's time zone."""
    if terms.penalty.minor == 0:
        return "Cancellation is free until check-in."
    deadline = format_deadline(terms.local_deadline(), terms.time_zone)
    return f"Free cancellation until {deadline}; after that, {format_money(terms.penalty)} is charged."


# One environment, its templates compiled at import (auto_reload off: they never change while running).
_ENV = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml", "html.j2"), default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,
)
_TEMPLATES: dict[tuple[NotificationKind, str], Template] = {
    (kind, part): _ENV.get_template(f"{kind}.{part}.j2") for kind in NotificationKind for part in ("txt", "html")
}
_SUBJECTS = {
    NotificationKind.CONFIRMED: "Your booking {code} is confirmed",
    NotificationKind.CANCELLED: "Your booking {code} is cancelled",
}


def render(mail: BookingMail, kind: NotificationKind) -> RenderedMail:
    """The subject, text part and HTML part of the e-mail of ``kind`` about ``mail``."""
    kind = NotificationKind(kind)
    subject = _SUBJECTS[kind].format(code=mail.confirmation_code)
    context = _context(mail, subject)
    return RenderedMail(
        subject=subject,
        text=_TEMPLATES[kind, "txt"].render(context),
        html=_TEMPLATES[kind, "html"].render(context),
    )


def _context(mail: BookingMail, subject: str) -> dict[str, Any]:
    count = (mail.check_out - mail.check_in).days
    rows = [(format_date(line.night), format_money(line.amount)) for line in mail.nights]
    taxes, total = format_money(mail.taxes), format_money(mail.total)
    # the text part lines the prices up in a column
    label_width = max([len("Total"), *(len(label) for label, _ in rows)])
    amount_width = max(len(amount) for amount in (taxes, total, *(a for _, a in rows)))

    def line(label: str, amount: str) -> str:
        return f"{label:<{label_width}}  {amount:>{amount_width}}"

    penalty = None
    if mail.penalty is not None:
        penalty = "no penalty" if mail.penalty.minor == 0 else format_money(mail.penalty)
    return {
        "subject": subject,
        "guest_name": mail.guest_name,
        "confirmation_code": mail.confirmation_code,
        "property_name": mail.property_name,
        "property_address": mail.property_address,
        "room_name": mail.room_name,
        "room_type": mail.room_type,
        "check_in": format_date(mail.check_in),
        "check_out": format_date(mail.check_out),
        "nights_label": f"{count} night" + ("" if count == 1 else "s"),
        "nights": [{"date": label, "amount": amount, "line": line(label, amount)} for label, amount in rows],
        "taxes": taxes,
        "taxes_line": line("Taxes", taxes),
        "total": total,
        "total_line": line("Total", total),
        "terms": cancellation_terms_text(mail.terms),
        "refund": None if mail.refund is None else format_money(mail.refund),
        "penalty": penalty,
    }
