"""The invariants of ARCHITECTURE.md, checked on a :class:`Snapshot`: one pure function per invariant,
each returning a :class:`CheckResult` with the violations it found, each naming the booking and its
trace when there is one.

A booking touched less than ``grace_s`` ago is *in flight*: its saga, its notification or the export
of its spans may still be under way, so the checks that judge a finished booking skip it (and say how
many they skipped). What is committed is judged at once whatever its age: two bookings on one
room-night, a hold committed after its expiry, a card number or a guest's personal data at rest.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from bookline.audit.snapshot import BookingRecord, Snapshot, nights_of

KINDS = ("confirmed", "cancelled")
# the notifications a settled booking must have had, one of each
EXPECTED_NOTIFICATIONS = {"confirmed": {"confirmed"}, "cancelled": {"confirmed", "cancelled"}, "failed": set()}
# for each saga step, the span names that compensate it (any one will do)
COMPENSATION_SPANS: dict[str, tuple[str, ...]] = {
    "hold": ("booking.release_lock",),
    "authorize": ("payment.void", "payment.refund"),
    "capture": ("payment.void", "payment.refund"),
    "confirm": ("booking.restore_inventory",),
}
SPAN_NAMES = tuple(sorted({name for names in COMPENSATION_SPANS.values() for name in names}))
PAYMENT_STEPS = ("authorize", "capture", "refund")
SETTLED = ("confirmed", "failed", "cancelled")


@dataclass(frozen=True)
class Policy:
    grace_s: float = 30.0
    payment_unknown_limit_s: float = 120.0


@dataclass(frozen=True)
class Violation:
    check: str
    message: str
    booking_id: str | None = None
    trace_id: str | None = None
    reservation_id: str | None = None
    service: str | None = None


@dataclass
class CheckResult:
    check: str
    title: str
    checked: int = 0
    violations: list[Violation] = field(default_factory=list)
    skipped: str | None = None  # why the check could not run
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.violations:
            return "fail"
        return "skipped" if self.skipped else "pass"


class _Facts:
    """Indexes of a snapshot that several checks need."""

    def __init__(self, snapshot: Snapshot, policy: Policy) -> None:
        self.snapshot = snapshot
        self.by_reservation = {b.reservation_id: b for b in snapshot.bookings}
        self.by_id = {b.booking_id: b for b in snapshot.bookings}
        quiet_since = snapshot.taken_at - policy.grace_s
        self.in_flight = [b for b in snapshot.bookings if b.updated_at > quiet_since]
        self.settled = [b for b in snapshot.bookings if b.updated_at <= quiet_since and b.status in SETTLED]
        self.auths = defaultdict(list)
        for a in snapshot.authorizations:
            self.auths[a.reservation_id].append(a)

    def violation(self, check: str, message: str, *, reservation_id: str | None = None,
                  booking: BookingRecord | None = None, booking_id: str | None = None) -> Violation:  # fmt: skip
        """A violation about a booking (found by reservation or by id when not given)."""
        if booking is None and reservation_id is not None:
            booking = self.by_reservation.get(reservation_id)
        if booking is None and booking_id is not None:
            booking = self.by_id.get(booking_id)
        return Violation(
            check,
            message,
            booking_id=booking.booking_id if booking else booking_id,
            trace_id=booking.trace_id if booking else None,
            reservation_id=booking.reservation_id if booking else reservation_id,
        )

    def in_flight_note(self) -> list[str]:
        n = len(self.in_flight)
        return (
            [f"{n} booking{'s' if n != 1 else ''} in flight (touched within the grace period) not judged"] if n else []
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _money(minor: int, currency: str | None) -> str:
    return f"{minor} {currency or ''}".strip()


# ---- 1. no room-night claimed twice ----------------------------------------------------------------


def check_room_nights_claimed_once(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """Two claim rows for one room-night in availability-service."""
    facts = _Facts(snapshot, policy)
    result = CheckResult("room_night_claimed_once", "no room-night claimed twice")
    claimants: dict[tuple[str, date], list[str]] = defaultdict(list)
    for claim in snapshot.claims:
        claimants[(claim.room_id, claim.night)].append(claim.reservation_id)
    placed = {h.reservation_id: h.created_at for h in snapshot.holds}
    for (room, night), reservations in sorted(claimants.items()):
        if len(reservations) > 1:
            later = max(reservations, key=lambda r: (placed.get(r, 0.0), r))  # the claim that should have failed
            result.violations.append(facts.violation(
                result.check,
                f"room {room}, night {night}: {len(reservations)} claims ({', '.join(sorted(reservations))})",
                reservation_id=later,
            ))  # fmt: skip
    result.checked = len(snapshot.claims)
    return result


# ---- 1b. no two confirmed bookings on one room-night, by the bookings' own records ---------------


def check_confirmed_bookings_never_overlap(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """Two confirmed bookings on one room and night, in booking-service's records or in
    confirmation-service's: the bookings themselves, whatever availability-service was made to say
    (nights restored behind a booking's back leave its claims gone but the booking standing)."""
    facts = _Facts(snapshot, policy)
    result = CheckResult("confirmed_bookings_never_overlap", "no two confirmed bookings share a room-night")
    booked = [
        ("booking-service", b.booking_id, b.reservation_id, b.room_id, b.check_in, b.check_out, b.created_at)
        for b in snapshot.bookings
        if b.status == "confirmed" and b.room_id and b.check_in and b.check_out
    ]
    confirmed = [
        ("confirmation-service", c.booking_id, c.reservation_id, c.room_id, c.check_in, c.check_out, c.created_at)
        for c in snapshot.confirmations
        if c.status == "confirmed"
    ]
    for records in (booked, confirmed):
        holders: dict[tuple[str, date], list[tuple[float, str, str, str]]] = defaultdict(list)
        for service, booking_id, reservation_id, room, check_in, check_out, created in records:
            for night in nights_of(check_in, check_out):
                holders[(room, night)].append((created, booking_id, reservation_id, service))
        reported: set[tuple[str, str]] = set()
        for (room, night), bookings in sorted(holders.items()):
            if len(bookings) < 2:
                continue
            bookings.sort()
            first = bookings[0][1]
            first_trace = facts.by_id[first].trace_id if first in facts.by_id else None
            first_named = f"{first} (trace {first_trace})" if first_trace else first
            for _created, booking_id, reservation_id, service in bookings[1:]:  # each later one should never be
                if (service, booking_id) in reported:
                    continue
                reported.add((service, booking_id))
                result.violations.append(replace(
                    facts.violation(
                        result.check,
                        f"{service}: confirmed on room {room} from {night}, a night {first_named} also holds",
                        reservation_id=reservation_id,
                        booking_id=booking_id,
                    ),
                    service=service,
                ))  # fmt: skip
    result.checked = len(booked) + len(confirmed)
    return result


# ---- 2. no expired hold counted or committed -------------------------------------------------------


def check_expired_holds_never_count(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """A hold committed after its expiry, or nights booked for a reservation whose hold is not committed."""
    facts = _Facts(snapshot, policy)
    result = CheckResult("expired_hold_not_counted", "no expired hold counted or committed")
    holds = {h.reservation_id: h for h in snapshot.holds}
    for hold in snapshot.holds:
        if hold.status == "committed" and hold.updated_at > hold.expires_at:
            result.violations.append(facts.violation(
                result.check,
                f"hold committed at {_iso(hold.updated_at)}, {hold.updated_at - hold.expires_at:.1f} s after it "
                f"expired ({_iso(hold.expires_at)})",
                reservation_id=hold.reservation_id,
            ))  # fmt: skip
    quiet_since = snapshot.taken_at - policy.grace_s
    # nights that search counts as taken (booked, or held and not expired at the time of the audit)
    booked: dict[str, list[date]] = defaultdict(list)
    held: dict[str, list[date]] = defaultdict(list)
    for claim in snapshot.claims:
        if claim.kind == "booked":
            booked[claim.reservation_id].append(claim.night)
        elif claim.expires_at is None or claim.expires_at > snapshot.taken_at:
            held[claim.reservation_id].append(claim.night)
    for reservation, nights in sorted(booked.items()):
        hold = holds.get(reservation)
        if hold is not None and (hold.status == "committed" or hold.updated_at > quiet_since):
            continue  # committed, or changed while the audit read (a cancellation freeing its nights)
        state = f"is {hold.status}" if hold else "does not exist"
        result.violations.append(facts.violation(
            result.check,
            f"{len(nights)} night(s) from {min(nights)} count as booked for a reservation whose hold {state}",
            reservation_id=reservation,
        ))  # fmt: skip
    for reservation, nights in sorted(held.items()):
        hold = holds.get(reservation)
        if hold is not None and hold.updated_at > quiet_since:
            continue
        if hold is not None and hold.status == "held" and hold.expires_at > snapshot.taken_at:
            continue
        state = "does not exist" if hold is None else (
            "expired" if hold.status == "held" else f"is {hold.status}"
        )  # fmt: skip
        result.violations.append(facts.violation(
            result.check,
            f"{len(nights)} night(s) from {min(nights)} count as taken for a hold that {state}",
            reservation_id=reservation,
        ))  # fmt: skip
    result.checked = len(snapshot.holds)
    return result


# ---- 3. money balances ---------------------------------------------------------------------------


def _kept(booking: BookingRecord) -> int:
    """What the gateway rightly keeps of a settled booking."""
    if booking.status == "confirmed":
        return booking.total_minor or 0
    if booking.status == "cancelled":
        return booking.cancellation_penalty_minor or 0
    return 0


def check_money_balances(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """Captured minus refunded, in the gateway's ledger, is the price of a confirmed booking, the
    penalty its terms kept for a cancelled one, and zero for a failed one; no money is held for a
    reservation without a booking."""
    facts = _Facts(snapshot, policy)
    result = CheckResult(
        "money_balances", "captured minus refunded equals the price (confirmed), the penalty (cancelled) or zero"
    )
    for booking in facts.settled:
        auths = facts.auths.get(booking.reservation_id, [])
        kept = sum(a.captured_minor - a.refunded_minor for a in auths)
        expected = _kept(booking)
        currencies = {a.currency for a in auths if a.currency and a.captured_minor}
        if kept != expected:
            result.violations.append(facts.violation(
                result.check,
                f"{booking.status} booking: the gateway kept {_money(kept, booking.currency)} (captured minus "
                f"refunded over {len(auths)} authorization(s)); expected {_money(expected, booking.currency)}",
                booking=booking,
            ))  # fmt: skip
        elif booking.currency and currencies - {booking.currency}:
            result.violations.append(facts.violation(
                result.check,
                f"captured in {', '.join(sorted(currencies))}, but the booking is priced in {booking.currency}",
                booking=booking,
            ))  # fmt: skip
    known = facts.by_reservation.keys() | snapshot.reservations_outside_window
    for reservation, auths in sorted(facts.auths.items()):
        if reservation in known:
            continue
        kept = sum(a.captured_minor - a.refunded_minor for a in auths)
        held = sum(a.amount_minor for a in auths if a.status == "authorized")
        if kept or held:
            result.violations.append(facts.violation(
                result.check,
                f"the gateway keeps {kept} and holds {held} (minor units) for reservation {reservation}, "
                "which has no booking",
                reservation_id=reservation,
            ))  # fmt: skip
    result.checked = len(facts.settled)
    result.notes = facts.in_flight_note()
    return result


# ---- 4. no authorization left open for a failed booking -------------------------------------------


def check_no_open_authorization(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    facts = _Facts(snapshot, policy)
    result = CheckResult("no_open_authorization", "no authorization left open for a failed or cancelled booking")
    done = [b for b in facts.settled if b.status in ("failed", "cancelled")]
    for booking in done:
        open_auths = [a for a in facts.auths.get(booking.reservation_id, []) if a.status == "authorized"]
        if open_auths:
            amounts = ", ".join(f"{a.auth_id} ({_money(a.amount_minor, a.currency)})" for a in open_auths)
            result.violations.append(facts.violation(
                result.check,
                f"{booking.status} booking still has {len(open_auths)} open authorization(s): {amounts}",
                booking=booking,
            ))  # fmt: skip
    result.checked = len(done)
    result.notes = facts.in_flight_note()
    return result


# ---- 5. no payment attempt left in an unknown state ------------------------------------------------


def check_no_payment_left_unknown(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """A payment step (authorize, capture, refund) started and never resolved for longer than the limit;
    a booking left pending that long with its card authorized."""
    facts = _Facts(snapshot, policy)
    limit = policy.payment_unknown_limit_s
    result = CheckResult("no_payment_left_unknown", f"no payment left in an unknown state over {limit:g} s")
    for booking in snapshot.bookings:
        for step in PAYMENT_STEPS:
            if booking.steps.get(step) != "started":
                continue
            age = snapshot.taken_at - booking.steps_updated_at.get(step, booking.updated_at)
            if age > limit:
                result.violations.append(facts.violation(
                    result.check,
                    f"{step} started {age:.0f} s ago and its outcome is still unknown ({booking.status} booking)",
                    booking=booking,
                ))  # fmt: skip
        quiet = snapshot.taken_at - booking.updated_at
        if booking.status == "pending" and quiet > limit and booking.steps.get("authorize") == "done":
            result.violations.append(facts.violation(
                result.check, f"pending for {quiet:.0f} s with the card authorized", booking=booking
            ))  # fmt: skip
    result.checked = len(snapshot.bookings)
    return result


# ---- 6. exactly one notification per (booking, kind) ---------------------------------------------


def check_one_notification_per_kind(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """Every confirmed booking notified once as confirmed; a cancelled one also once as cancelled; a
    failed one never. Where the e-mails on disk are known, each logged one exists and no other does."""
    facts = _Facts(snapshot, policy)
    result = CheckResult("one_notification_per_kind", "exactly one notification per booking and kind")
    logged = Counter((n.booking_id, n.kind) for n in snapshot.notifications)
    mail = {(m.booking_id, m.kind) for m in snapshot.mail} if snapshot.mail is not None else None
    for booking in facts.settled:
        expected = EXPECTED_NOTIFICATIONS[booking.status]
        for kind in KINDS:
            count = logged[(booking.booking_id, kind)]
            problem = None
            if kind in expected and count != 1:
                problem = (
                    f"no {kind} notification was sent" if count == 0 else f"{count} {kind} notifications were sent"
                )
            elif kind not in expected and count:
                problem = f"a {kind} notification was sent for a {booking.status} booking"
            elif mail is not None and kind in expected and (booking.booking_id, kind) not in mail:
                problem = f"the {kind} notification is logged as sent, but its e-mail (.eml) does not exist"
            elif mail is not None and kind not in expected and (booking.booking_id, kind) in mail:
                problem = f"a {kind} e-mail (.eml) exists for a {booking.status} booking"
            if problem:
                result.violations.append(facts.violation(result.check, problem, booking=booking))
    result.checked = len(facts.settled)
    result.notes = facts.in_flight_note()
    if mail is None:
        result.notes.append("the e-mails on disk were not listed: only the sent-notification log was checked")
    return result


# ---- 7. every compensation is in a trace ---------------------------------------------------------


def check_compensations_traced(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """For every failed booking, each compensated saga step has its compensation span in a stored
    trace (the booking's own, or a recovery or reconciliation trace of the same reservation)."""
    facts = _Facts(snapshot, policy)
    result = CheckResult("compensations_traced", "every failed booking's compensations are in its traces")
    if snapshot.spans is None:
        result.skipped = snapshot.spans_unavailable or "no telemetry store was read"
        return result
    names: dict[str, set[str]] = defaultdict(set)
    for span in snapshot.spans:
        if span.reservation_id:
            names[span.reservation_id].add(span.name)
    horizon = snapshot.oldest_span_unix_nano / 1e9 if snapshot.oldest_span_unix_nano is not None else None
    failed = [b for b in facts.settled if b.status == "failed"]
    too_old = 0
    for booking in failed:
        if horizon is None or booking.created_at < horizon:
            too_old += 1
            continue
        result.checked += 1
        found = names.get(booking.reservation_id, set())
        for step, compensations in COMPENSATION_SPANS.items():
            if booking.steps.get(step) == "compensated" and not found.intersection(compensations):
                result.violations.append(facts.violation(
                    result.check,
                    f"step {step} was compensated, but no {' or '.join(compensations)} span of this "
                    "reservation is stored in any trace",
                    booking=booking,
                ))  # fmt: skip
    if too_old:
        where = "the store holds no trace" if horizon is None else "older than the store's oldest trace"
        result.notes.append(f"{too_old} failed booking(s) not checked: {where} (retention)")
        if not result.checked:
            result.skipped = f"every failed booking is beyond the telemetry store's reach: {where}"
    result.notes.extend(facts.in_flight_note())
    return result


# ---- 8. no card number at rest -------------------------------------------------------------------


def check_no_card_numbers(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """No card number in any stored span, log, metric or database row of any service."""
    result = CheckResult("no_card_numbers", "no card number in any stored span, log or database row")
    for hit in snapshot.card_hits:
        result.violations.append(Violation(
            result.check,
            f"{hit.table}.{hit.column} of row {hit.row_key} holds a card number",
            service=hit.service,
        ))  # fmt: skip
    result.checked = len(snapshot.card_scanned)
    for service, why in sorted(snapshot.card_scan_skipped.items()):
        result.notes.append(f"{service} not scanned: {why}")
    if not snapshot.card_scanned:
        result.skipped = "no service's stored data was scanned"
    return result


# ---- 9. no guest's personal data outside the two services that keep it ------------------------------

# what each kind of personal data a data scan finds is called in a violation (a card number is
# no_card_numbers' to report)
PERSONAL_DATA = {"name": "a guest's name", "email": "an e-mail address", "phone": "a phone number"}


def check_no_personal_data(snapshot: Snapshot, policy: Policy = Policy()) -> CheckResult:
    """No guest's name, e-mail address or phone number in any stored span, log, metric, queue message
    or database row of any service, but booking-service's and confirmation-service's guest columns
    (which their data scans skip)."""
    result = CheckResult(
        "no_personal_data", "no guest name, e-mail or phone number outside booking-service and confirmation-service"
    )
    for hit in snapshot.data_hits:
        if hit.kind not in PERSONAL_DATA:
            continue
        result.violations.append(Violation(
            result.check,
            f"{hit.kind}: {hit.table}.{hit.column} of row {hit.row_key} holds {PERSONAL_DATA[hit.kind]}",
            service=hit.service,
        ))  # fmt: skip
    result.checked = len(snapshot.data_scanned)
    if snapshot.guest_names_unavailable:
        result.notes.append(snapshot.guest_names_unavailable)
    elif snapshot.guest_names is not None:
        result.notes.append(f"{snapshot.guest_names} guest name(s) looked for")
    for service in snapshot.data_scan_truncated:
        result.notes.append(f"{service}: more places hold personal data than its scan lists")
    for service, why in sorted(snapshot.data_scan_skipped.items()):
        result.notes.append(f"{service} not scanned: {why}")
    if not snapshot.data_scanned:
        result.skipped = "no service's stored data was scanned"
    return result


CHECKS: tuple[Callable[[Snapshot, Policy], CheckResult], ...] = (
    check_room_nights_claimed_once,
    check_confirmed_bookings_never_overlap,
    check_expired_holds_never_count,
    check_money_balances,
    check_no_open_authorization,
    check_no_payment_left_unknown,
    check_one_notification_per_kind,
    check_compensations_traced,
    check_no_card_numbers,
    check_no_personal_data,
)


def run_checks(snapshot: Snapshot, policy: Policy = Policy(), checks: Iterable[Callable] = CHECKS) -> list[CheckResult]:
    return [check(snapshot, policy) for check in checks]
