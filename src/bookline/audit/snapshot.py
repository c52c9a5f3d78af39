"""What the audit knows of a running Bookline: plain records of every service's state, read once.

The checks are pure functions of a :class:`Snapshot`, so each can be shown, on a hand-made one,
to pass on consistent data and to catch what it is for. :mod:`bookline.audit.collect` fills one
from the services' admin endpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta


def nights_of(check_in: date, check_out: date) -> Iterator[date]:
    """The nights of a stay, ``[check_in, check_out)``."""
    night = check_in
    while night < check_out:
        yield night
        night += timedelta(days=1)


@dataclass(frozen=True)
class BookingRecord:
    """A booking as booking-service has it, with its saga log."""

    booking_id: str
    reservation_id: str
    status: str  # pending | confirmed | failed | cancelled
    created_at: float
    updated_at: float
    outcome: str | None = None
    failure_code: str | None = None
    room_id: str | None = None
    check_in: date | None = None
    check_out: date | None = None
    total_minor: int | None = None
    currency: str | None = None
    # what a cancellation kept under the booking's terms (None: cancelled before terms, or not cancelled)
    cancellation_penalty_minor: int | None = None
    payment_transaction_id: str | None = None
    trace_id: str | None = None
    steps: dict[str, str] = field(default_factory=dict)  # step -> started | done | failed | compensated
    steps_updated_at: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class HoldRecord:
    """A reservation lock as availability-service has it."""

    reservation_id: str
    room_id: str
    check_in: date
    check_out: date
    status: str  # held | committed | released | expired
    expires_at: float
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ClaimRecord:
    """One row of availability-service's room-night claims (a hold's night, or a booked night)."""

    room_id: str
    night: date
    reservation_id: str
    kind: str  # hold | booked
    expires_at: float | None = None


@dataclass(frozen=True)
class ConfirmationRecord:
    """A booking as confirmation-service has it (it only knows confirmed ones, and cancellations)."""

    reservation_id: str
    booking_id: str
    status: str  # confirmed | cancelled
    room_id: str
    check_in: date
    check_out: date
    confirmation_code: str = ""
    created_at: float = 0.0


@dataclass(frozen=True)
class AuthorizationRecord:
    """An authorization in the payment gateway's own ledger (amounts in minor units)."""

    auth_id: str
    reservation_id: str
    status: str  # authorized | declined | captured | partially_refunded | refunded | voided
    amount_minor: int
    captured_minor: int = 0
    refunded_minor: int = 0
    currency: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class NotificationRecord:
    """A row of notification-service's sent-notification log."""

    booking_id: str
    kind: str  # confirmed | cancelled
    message_id: str = ""
    sent_at: float = 0.0


@dataclass(frozen=True)
class MailRecord:
    """An ``.eml`` file the guest got (one per booking and kind)."""

    booking_id: str
    kind: str


@dataclass(frozen=True)
class SpanRecord:
    """A stored span of one of the compensation names, and the reservation it worked on."""

    trace_id: str
    name: str
    reservation_id: str | None
    status: str = "UNSET"


@dataclass(frozen=True)
class CardHit:
    """A place where a card number is stored (never the number itself)."""

    service: str
    table: str
    column: str
    row_key: str


@dataclass(frozen=True)
class DataHit:
    """A place where a data scan found personal data: ``kind`` is card, email, phone or name (never
    the value itself)."""

    kind: str
    service: str
    table: str
    column: str
    row_key: str


@dataclass
class Snapshot:
    """Everything the checks look at, read at ``taken_at`` (unix seconds).

    ``since``: only records created at or after it were read. ``mail`` is None when the e-mails on
    disk could not be listed; ``spans`` is None when no telemetry store could be read, and
    ``spans_unavailable`` says why. ``reservations_outside_window``: reservations of bookings created
    before ``since`` (their money may be in the snapshot, the bookings are not audited).
    ``data_hits``: what the data scans found; ``guest_names``: how many of booking-service's guest names
    they looked for (the names themselves are never kept), None when they were not available, and
    ``guest_names_unavailable`` says why.
    """

    taken_at: float
    since: float | None = None
    bookings: list[BookingRecord] = field(default_factory=list)
    holds: list[HoldRecord] = field(default_factory=list)
    claims: list[ClaimRecord] = field(default_factory=list)
    confirmations: list[ConfirmationRecord] = field(default_factory=list)
    authorizations: list[AuthorizationRecord] = field(default_factory=list)
    notifications: list[NotificationRecord] = field(default_factory=list)
    mail: list[MailRecord] | None = None
    spans: list[SpanRecord] | None = None
    spans_unavailable: str | None = None
    oldest_span_unix_nano: int | None = None
    card_hits: list[CardHit] = field(default_factory=list)
    card_scanned: list[str] = field(default_factory=list)  # services whose stored data was scanned
    card_scan_skipped: dict[str, str] = field(default_factory=dict)  # service -> why not
    data_hits: list[DataHit] = field(default_factory=list)
    data_scanned: list[str] = field(default_factory=list)  # services whose stored data was scanned
    data_scan_skipped: dict[str, str] = field(default_factory=dict)  # service -> why not
    data_scan_truncated: list[str] = field(default_factory=list)  # services that found more than they listed
    guest_names: int | None = None
    guest_names_unavailable: str | None = None
    reservations_outside_window: set[str] = field(default_factory=set)
