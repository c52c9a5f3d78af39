"""Each invariant check of ``bookline audit`` on small hand-made snapshots: it passes on a consistent
one, and it catches the violation it is for (naming the booking and its trace)."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from bookline.audit.checks import (
    CHECKS,
    Policy,
    check_compensations_traced,
    check_confirmed_bookings_never_overlap,
    check_expired_holds_never_count,
    check_money_balances,
    check_no_card_numbers,
    check_no_open_authorization,
    check_no_payment_left_unknown,
    check_no_personal_data,
    check_one_notification_per_kind,
    check_room_nights_claimed_once,
    run_checks,
)
from bookline.audit.snapshot import (
    AuthorizationRecord,
    BookingRecord,
    CardHit,
    ClaimRecord,
    ConfirmationRecord,
    DataHit,
    HoldRecord,
    MailRecord,
    NotificationRecord,
    Snapshot,
    SpanRecord,
)

NOW = 1_800_000_000.0
OLD = NOW - 600  # well past the grace period
POLICY = Policy(grace_s=30.0, payment_unknown_limit_s=120.0)
SERVICES = ["booking-service", "availability-service", "pricing-engine", "confirmation-service",
            "payment-gateway", "notification-service", "telemetry"]  # fmt: skip
MAR = date(2027, 3, 5)
DONE = {"hold": "done", "authorize": "done", "confirm": "done", "capture": "done"}


def booking(n: str, status: str, *, steps: dict[str, str], total: int = 20000, **changes) -> BookingRecord:
    record = BookingRecord(
        booking_id=f"bk_{n}",
        reservation_id=f"rsv_{n}",
        status=status,
        created_at=OLD - 10,
        updated_at=OLD,
        room_id="r1",
        check_in=MAR,
        check_out=date(2027, 3, 7),
        total_minor=total,
        currency="EUR",
        trace_id=f"{n:0>32}",
        steps=steps,
        steps_updated_at={step: OLD for step in steps},
    )
    return dataclasses.replace(record, **changes)


def consistent() -> Snapshot:
    """A confirmed, a cancelled, a declined and an unavailable booking, all as they should be."""
    return Snapshot(
        taken_at=NOW,
        bookings=[
            booking("c1", "confirmed", steps=DONE),
            booking("x1", "cancelled", steps={**DONE, "cancel": "done", "refund": "done"}, total=15000),
            booking("f1", "failed", steps={"hold": "compensated", "authorize": "compensated"}, outcome="declined"),
            booking("f2", "failed", steps={}, outcome="unavailable", total=None),
        ],
        holds=[
            HoldRecord("rsv_c1", "r1", MAR, date(2027, 3, 7), "committed", OLD + 500, OLD - 9, OLD - 8),
            HoldRecord("rsv_x1", "r1", date(2027, 3, 10), date(2027, 3, 12), "released", OLD + 500, OLD - 9, OLD),
            HoldRecord("rsv_f1", "r2", MAR, date(2027, 3, 7), "released", OLD + 500, OLD - 9, OLD),
        ],
        claims=[
            ClaimRecord("r1", MAR, "rsv_c1", "booked"),
            ClaimRecord("r1", date(2027, 3, 6), "rsv_c1", "booked"),
            # a hold that expired and was not swept yet: it does not count, it is no violation
            ClaimRecord("r3", MAR, "rsv_h9", "hold", expires_at=OLD),
        ],
        confirmations=[
            ConfirmationRecord("rsv_c1", "bk_c1", "confirmed", "r1", MAR, date(2027, 3, 7)),
            ConfirmationRecord("rsv_x1", "bk_x1", "cancelled", "r1", date(2027, 3, 10), date(2027, 3, 12)),
        ],
        authorizations=[
            AuthorizationRecord("auth_c1", "rsv_c1", "captured", 20000, captured_minor=20000, currency="EUR"),
            AuthorizationRecord("auth_x1", "rsv_x1", "refunded", 15000, 15000, 15000, currency="EUR"),
            AuthorizationRecord("auth_f1", "rsv_f1", "declined", 20000, currency="EUR"),
        ],
        notifications=[
            NotificationRecord("bk_c1", "confirmed"),
            NotificationRecord("bk_x1", "confirmed"),
            NotificationRecord("bk_x1", "cancelled"),
        ],
        mail=[MailRecord("bk_c1", "confirmed"), MailRecord("bk_x1", "confirmed"), MailRecord("bk_x1", "cancelled")],
        spans=[
            SpanRecord("f" * 32, "booking.release_lock", "rsv_f1"),
            SpanRecord("f" * 32, "payment.void", "rsv_f1"),
            SpanRecord("x" * 32, "payment.refund", "rsv_x1"),
        ],
        oldest_span_unix_nano=int((OLD - 3600) * 1e9),
        card_scanned=list(SERVICES),
        data_scanned=list(SERVICES),
        guest_names=4,
    )


def test_a_consistent_snapshot_passes_every_check() -> None:
    results = run_checks(consistent(), POLICY)

    assert [(r.check, r.status) for r in results if r.status != "pass"] == []
    assert all(r.checked > 0 for r in results)


def only(result) -> object:
    assert len(result.violations) == 1, result.violations
    return result.violations[0]


# ---- 1 -------------------------------------------------------------------------------------------


def test_two_claim_rows_on_one_room_night_are_a_violation_naming_the_later_claim() -> None:
    snap = consistent()
    snap.bookings.append(booking("c2", "confirmed", steps=DONE))
    snap.holds.append(HoldRecord("rsv_c2", "r1", MAR, date(2027, 3, 6), "committed", OLD + 500, OLD - 5, OLD - 5))
    snap.claims.append(ClaimRecord("r1", MAR, "rsv_c2", "booked"))

    v = only(check_room_nights_claimed_once(snap, POLICY))

    assert (v.booking_id, v.trace_id) == ("bk_c2", "c2".rjust(32, "0"))
    assert "room r1, night 2027-03-05: 2 claims" in v.message


def test_two_confirmed_bookings_overlapping_on_a_room_are_a_violation_in_each_services_records() -> None:
    snap = consistent()
    snap.bookings.append(booking("c2", "confirmed", steps=DONE, created_at=OLD))
    later = dataclasses.replace(snap.confirmations[0], reservation_id="rsv_c2", booking_id="bk_c2", created_at=OLD)
    snap.confirmations.append(later)
    # the cancelled booking's nights taken again: that is what cancelling is for
    snap.confirmations.append(
        ConfirmationRecord("rsv_c3", "bk_c3", "confirmed", "r1", date(2027, 3, 10), date(2027, 3, 11))
    )

    result = check_confirmed_bookings_never_overlap(snap, POLICY)

    assert sorted((v.service, v.booking_id) for v in result.violations) == [
        ("booking-service", "bk_c2"),
        ("confirmation-service", "bk_c2"),
    ]
    assert all("bk_c1" in v.message and v.trace_id == "c2".rjust(32, "0") for v in result.violations)
    # both bookings and both traces are named: the later one in the fields, the first in the message
    assert all(f"(trace {'c1'.rjust(32, '0')})" in v.message for v in result.violations)


def test_a_double_booking_only_booking_service_remembers_is_still_found() -> None:
    # confirmation-service's record of the first booking was made to say "cancelled": booking-service's stands
    snap = consistent()
    snap.bookings.append(booking("c2", "confirmed", steps=DONE, created_at=OLD, check_in=date(2027, 3, 6)))

    v = only(check_confirmed_bookings_never_overlap(snap, POLICY))

    assert (v.service, v.booking_id) == ("booking-service", "bk_c2")


def test_a_double_booking_only_confirmation_service_remembers_is_still_found() -> None:
    # booking-service's record of the second booking was made to say "failed": confirmation-service's stands
    snap = consistent()
    snap.bookings.append(booking("c2", "failed", steps={}, created_at=OLD, check_in=date(2027, 3, 6)))
    snap.confirmations.append(
        ConfirmationRecord("rsv_c2", "bk_c2", "confirmed", "r1", date(2027, 3, 6), date(2027, 3, 8), created_at=OLD)
    )

    v = only(check_confirmed_bookings_never_overlap(snap, POLICY))

    assert (v.service, v.booking_id, v.trace_id) == ("confirmation-service", "bk_c2", "c2".rjust(32, "0"))
    assert v.message.startswith("confirmation-service: confirmed on room r1 from 2027-03-06, a night bk_c1")


def test_a_cancelled_booking_on_the_same_nights_is_no_overlap_in_either_record() -> None:
    snap = consistent()
    snap.bookings.append(booking("x2", "cancelled", steps={**DONE, "cancel": "done", "refund": "done"}))
    snap.confirmations.append(ConfirmationRecord("rsv_x2", "bk_x2", "cancelled", "r1", MAR, date(2027, 3, 7)))

    result = check_confirmed_bookings_never_overlap(snap, POLICY)

    assert result.violations == [] and result.status == "pass"


def test_the_same_room_on_other_nights_or_another_room_on_the_same_nights_is_no_overlap() -> None:
    snap = consistent()
    snap.bookings.append(booking("c2", "confirmed", steps=DONE, room_id="r2"))
    snap.confirmations.append(ConfirmationRecord("rsv_c2", "bk_c2", "confirmed", "r2", MAR, date(2027, 3, 7)))
    snap.bookings.append(
        booking("c3", "confirmed", steps=DONE, check_in=date(2027, 3, 20), check_out=date(2027, 3, 22))
    )
    snap.confirmations.append(
        ConfirmationRecord("rsv_c3", "bk_c3", "confirmed", "r1", date(2027, 3, 20), date(2027, 3, 22))
    )

    assert check_confirmed_bookings_never_overlap(snap, POLICY).violations == []


def test_stays_that_only_touch_share_no_night() -> None:
    snap = consistent()
    snap.bookings.append(
        booking("c2", "confirmed", steps=DONE, created_at=OLD, check_in=date(2027, 3, 7), check_out=date(2027, 3, 9))
    )
    snap.confirmations.append(
        ConfirmationRecord("rsv_c2", "bk_c2", "confirmed", "r1", date(2027, 3, 7), date(2027, 3, 9))
    )

    assert check_confirmed_bookings_never_overlap(snap, POLICY).violations == []


# ---- 2 -------------------------------------------------------------------------------------------


def test_a_hold_committed_after_its_expiry_is_a_violation() -> None:
    snap = consistent()
    snap.holds[0] = dataclasses.replace(snap.holds[0], expires_at=OLD - 20, updated_at=OLD - 8)

    v = only(check_expired_holds_never_count(snap, POLICY))

    assert v.booking_id == "bk_c1" and v.trace_id == "c1".rjust(32, "0")
    assert "12.0 s after it expired" in v.message


def test_nights_booked_for_a_hold_that_is_not_committed_are_a_violation() -> None:
    snap = consistent()
    snap.holds[0] = dataclasses.replace(snap.holds[0], status="expired")

    v = only(check_expired_holds_never_count(snap, POLICY))

    assert v.booking_id == "bk_c1"
    assert "2 night(s) from 2027-03-05 count as booked for a reservation whose hold is expired" == v.message


@pytest.mark.parametrize(
    ("status", "expires_at", "state"),
    [("expired", NOW + 300, "is expired"), ("released", NOW + 300, "is released"), ("held", NOW - 1, "expired")],
)
def test_nights_still_counted_as_taken_for_a_hold_that_ended_or_expired_are_a_violation(
    status: str, expires_at: float, state: str
) -> None:
    snap = consistent()
    snap.holds.append(HoldRecord("rsv_h1", "r4", MAR, date(2027, 3, 6), status, expires_at, OLD - 9, OLD - 9))
    # the claim still says it runs for five minutes: search would count the night as taken
    snap.claims.append(ClaimRecord("r4", MAR, "rsv_h1", "hold", expires_at=NOW + 300))

    v = only(check_expired_holds_never_count(snap, POLICY))

    assert v.reservation_id == "rsv_h1"
    assert v.message == f"1 night(s) from 2027-03-05 count as taken for a hold that {state}"


def test_a_live_hold_counts_its_nights_and_that_is_no_violation() -> None:
    snap = consistent()
    snap.holds.append(HoldRecord("rsv_h1", "r4", MAR, date(2027, 3, 6), "held", NOW + 300, OLD - 9, OLD - 9))
    snap.claims.append(ClaimRecord("r4", MAR, "rsv_h1", "hold", expires_at=NOW + 300))

    assert check_expired_holds_never_count(snap, POLICY).violations == []


def test_a_hold_that_changed_while_the_audit_read_is_not_judged_on_claims_read_before() -> None:
    snap = consistent()
    # a cancellation freed the nights between the read of the claims and the read of the holds
    snap.holds[0] = dataclasses.replace(snap.holds[0], status="released", updated_at=NOW - 1)

    assert check_expired_holds_never_count(snap, POLICY).violations == []


# ---- 3 -------------------------------------------------------------------------------------------


def test_money_refunded_behind_bookings_back_is_a_violation_naming_the_booking_and_trace() -> None:
    snap = consistent()
    snap.authorizations[0] = dataclasses.replace(snap.authorizations[0], status="refunded", refunded_minor=20000)

    v = only(check_money_balances(snap, POLICY))

    assert (v.booking_id, v.trace_id) == ("bk_c1", "c1".rjust(32, "0"))
    assert "kept 0 EUR" in v.message and "expected 20000 EUR" in v.message


def test_the_penalty_of_a_late_cancellation_is_money_rightly_kept_and_only_that() -> None:
    snap = consistent()
    snap.bookings[1] = dataclasses.replace(snap.bookings[1], cancellation_penalty_minor=5000)
    partly = dataclasses.replace(snap.authorizations[1], status="partially_refunded", refunded_minor=10000)
    snap.authorizations[1] = partly
    assert check_money_balances(snap, POLICY).violations == []

    snap.authorizations[1] = dataclasses.replace(partly, status="refunded", refunded_minor=15000)  # all refunded
    v = only(check_money_balances(snap, POLICY))
    assert v.booking_id == "bk_x1" and "kept 0 EUR" in v.message and "expected 5000 EUR" in v.message


def test_money_kept_for_a_failed_booking_is_a_violation() -> None:
    snap = consistent()
    snap.authorizations[2] = dataclasses.replace(snap.authorizations[2], status="captured", captured_minor=20000)

    v = only(check_money_balances(snap, POLICY))

    assert v.booking_id == "bk_f1"
    assert "failed booking: the gateway kept 20000 EUR" in v.message


def test_money_for_a_reservation_without_a_booking_is_a_violation_unless_it_is_outside_the_window() -> None:
    snap = consistent()
    snap.authorizations.append(AuthorizationRecord("auth_z", "rsv_zz", "captured", 900, captured_minor=900))

    v = only(check_money_balances(snap, POLICY))
    assert v.reservation_id == "rsv_zz" and v.booking_id is None
    assert "which has no booking" in v.message

    snap.reservations_outside_window = {"rsv_zz"}
    assert check_money_balances(snap, POLICY).violations == []


def test_a_booking_touched_within_the_grace_period_is_in_flight_and_not_judged() -> None:
    snap = consistent()
    snap.bookings[0] = dataclasses.replace(snap.bookings[0], updated_at=NOW - 5)
    snap.authorizations[0] = dataclasses.replace(snap.authorizations[0], status="authorized", captured_minor=0)

    result = check_money_balances(snap, POLICY)

    assert result.violations == []
    assert result.notes == ["1 booking in flight (touched within the grace period) not judged"]


# ---- 4 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", [2, 1])
def test_an_authorization_left_open_for_a_failed_or_cancelled_booking_is_a_violation(which: int) -> None:
    snap = consistent()
    snap.authorizations[which] = dataclasses.replace(snap.authorizations[which], status="authorized",
                                                     captured_minor=0, refunded_minor=0)  # fmt: skip

    v = only(check_no_open_authorization(snap, POLICY))

    assert v.reservation_id == snap.authorizations[which].reservation_id
    assert f"open authorization(s): {snap.authorizations[which].auth_id}" in v.message


# ---- 5 -------------------------------------------------------------------------------------------


def test_a_payment_step_started_longer_than_the_limit_is_a_violation_even_in_flight() -> None:
    snap = consistent()
    snap.bookings[0] = dataclasses.replace(
        snap.bookings[0], steps={**DONE, "capture": "started"}, steps_updated_at={"capture": NOW - 200},
        updated_at=NOW - 1,
    )  # fmt: skip
    snap.bookings[1] = dataclasses.replace(
        snap.bookings[1], steps={**DONE, "refund": "started"}, steps_updated_at={"refund": NOW - 60}
    )

    v = only(check_no_payment_left_unknown(snap, POLICY))

    assert v.booking_id == "bk_c1"
    assert v.message == "capture started 200 s ago and its outcome is still unknown (confirmed booking)"


def test_a_booking_left_pending_with_its_card_authorized_is_a_violation() -> None:
    snap = consistent()
    snap.bookings.append(
        booking("p1", "pending", steps={"hold": "done", "authorize": "done", "confirm": "started"},
                updated_at=NOW - 300)
    )  # fmt: skip

    v = only(check_no_payment_left_unknown(snap, POLICY))

    assert v.booking_id == "bk_p1"
    assert v.message == "pending for 300 s with the card authorized"


# ---- 6 -------------------------------------------------------------------------------------------


def test_a_confirmed_booking_never_notified_is_a_violation() -> None:
    snap = consistent()
    snap.notifications = [n for n in snap.notifications if n.booking_id != "bk_c1"]
    snap.mail = [m for m in snap.mail or [] if m.booking_id != "bk_c1"]

    v = only(check_one_notification_per_kind(snap, POLICY))

    assert (v.booking_id, v.message) == ("bk_c1", "no confirmed notification was sent")


def test_a_second_notification_of_one_kind_is_a_violation() -> None:
    snap = consistent()
    snap.notifications.append(NotificationRecord("bk_x1", "cancelled", message_id="again"))

    v = only(check_one_notification_per_kind(snap, POLICY))

    assert (v.booking_id, v.message) == ("bk_x1", "2 cancelled notifications were sent")


def test_a_notification_for_a_failed_booking_is_a_violation() -> None:
    snap = consistent()
    snap.notifications.append(NotificationRecord("bk_f1", "confirmed"))

    v = only(check_one_notification_per_kind(snap, POLICY))

    assert (v.booking_id, v.message) == ("bk_f1", "a confirmed notification was sent for a failed booking")


def test_a_logged_notification_without_its_email_and_an_email_nobody_should_get_are_violations() -> None:
    snap = consistent()
    snap.mail = [MailRecord("bk_x1", "confirmed"), MailRecord("bk_x1", "cancelled"), MailRecord("bk_f1", "cancelled")]

    result = check_one_notification_per_kind(snap, POLICY)

    assert sorted((v.booking_id, v.message) for v in result.violations) == [
        ("bk_c1", "the confirmed notification is logged as sent, but its e-mail (.eml) does not exist"),
        ("bk_f1", "a cancelled e-mail (.eml) exists for a failed booking"),
    ]


def test_without_the_emails_on_disk_only_the_log_is_checked_and_the_report_says_so() -> None:
    snap = consistent()
    snap.mail = None

    result = check_one_notification_per_kind(snap, POLICY)

    assert result.status == "pass"
    assert any("e-mails on disk were not listed" in note for note in result.notes)


# ---- 7 -------------------------------------------------------------------------------------------


def test_a_compensated_step_without_its_compensation_span_is_a_violation_naming_the_step() -> None:
    snap = consistent()
    snap.spans = [s for s in snap.spans or [] if s.name != "payment.void"]

    v = only(check_compensations_traced(snap, POLICY))

    assert (v.booking_id, v.trace_id) == ("bk_f1", "f1".rjust(32, "0"))
    assert v.message.startswith("step authorize was compensated, but no payment.void or payment.refund span")


def test_a_compensation_in_a_recovery_trace_of_the_same_reservation_counts() -> None:
    snap = consistent()
    recovery_trace = "r" * 32  # booking.recover: its own trace, linked to the booking's
    snap.spans = [SpanRecord(recovery_trace, s.name, s.reservation_id) for s in snap.spans or []]

    assert check_compensations_traced(snap, POLICY).status == "pass"


def test_without_a_telemetry_store_the_trace_check_is_skipped_with_the_reason_not_passed() -> None:
    snap = consistent()
    snap.spans, snap.spans_unavailable = None, "traces go to http://collector:4318, not to the local telemetry store"

    result = check_compensations_traced(snap, POLICY)

    assert result.status == "skipped"
    assert result.skipped == snap.spans_unavailable


def test_failed_bookings_older_than_the_stores_oldest_trace_are_skipped_not_failed() -> None:
    snap = consistent()
    snap.spans = []
    snap.oldest_span_unix_nano = int(NOW * 1e9)  # retention deleted everything older

    result = check_compensations_traced(snap, POLICY)

    assert result.status == "skipped" and result.violations == []
    assert "older than the store's oldest trace" in result.skipped


# ---- 8 -------------------------------------------------------------------------------------------


def test_a_card_number_at_rest_is_a_violation_naming_the_service_and_place() -> None:
    snap = consistent()
    snap.card_hits = [CardHit("telemetry", "spans", "attributes", "abc/def")]

    v = only(check_no_card_numbers(snap, POLICY))

    assert v.service == "telemetry"
    assert v.message == "spans.attributes of row abc/def holds a card number"


def test_a_store_that_was_not_scanned_is_reported() -> None:
    snap = consistent()
    snap.card_scanned.remove("telemetry")
    snap.card_scan_skipped = {"telemetry": "the telemetry store does not answer"}

    result = check_no_card_numbers(snap, POLICY)

    assert result.status == "pass"
    assert result.notes == ["telemetry not scanned: the telemetry store does not answer"]


# ---- 9 -------------------------------------------------------------------------------------------


def test_personal_data_outside_the_two_guest_services_is_a_violation_naming_kind_service_and_place() -> None:
    snap = consistent()
    snap.data_hits = [
        DataHit("phone", "telemetry", "spans", "attributes", "abc/def"),
        DataHit("email", "notification-service", "queue.messages", "body", "17"),
        DataHit("name", "availability-service", "properties", "name", "prop-00001"),
    ]

    result = check_no_personal_data(snap, POLICY)

    assert result.status == "fail"
    assert [(v.service, v.message) for v in result.violations] == [
        ("telemetry", "phone: spans.attributes of row abc/def holds a phone number"),
        ("notification-service", "email: queue.messages.body of row 17 holds an e-mail address"),
        ("availability-service", "name: properties.name of row prop-00001 holds a guest's name"),
    ]
    assert result.checked == len(SERVICES)


def test_a_card_number_found_by_the_data_scan_is_left_to_the_card_check() -> None:
    snap = consistent()
    snap.data_hits = [DataHit("card", "booking-service", "bookings", "user_id", "bk_1")]

    assert check_no_personal_data(snap, POLICY).status == "pass"


def test_a_clean_scan_passes_and_says_how_many_names_were_looked_for() -> None:
    result = check_no_personal_data(consistent(), POLICY)

    assert (result.status, result.violations) == ("pass", [])
    assert result.notes == ["4 guest name(s) looked for"]


def test_without_guest_names_a_store_not_scanned_or_a_truncated_scan_the_check_says_so() -> None:
    snap = consistent()
    snap.guest_names, snap.guest_names_unavailable = None, "booking-service has no GET /admin/guest-names: ..."
    snap.data_scanned.remove("telemetry")
    snap.data_scan_skipped = {"telemetry": "telemetry is off (OTEL_SDK_DISABLED=true)"}
    snap.data_scan_truncated = ["notification-service"]

    result = check_no_personal_data(snap, POLICY)

    assert result.status == "pass"
    assert result.notes == [
        "booking-service has no GET /admin/guest-names: ...",
        "notification-service: more places hold personal data than its scan lists",
        "telemetry not scanned: telemetry is off (OTEL_SDK_DISABLED=true)",
    ]


def test_control_when_nothing_was_scanned_the_check_is_skipped_not_passed() -> None:
    snap = consistent()
    snap.data_scanned = []

    assert check_no_personal_data(snap, POLICY).status == "skipped"


def test_the_personal_data_check_runs_with_the_others() -> None:
    snap = consistent()
    snap.data_hits = [DataHit("email", "pricing-engine", "rates", "note", "r1")]

    results = {r.check: r for r in run_checks(snap, POLICY)}

    assert check_no_personal_data in CHECKS
    assert results["no_personal_data"].status == "fail" and results["no_card_numbers"].status == "pass"
