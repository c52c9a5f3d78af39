"""The booking saga, orchestrated by booking-service under the span ``booking.create``:
availability -> price -> hold -> authorize -> confirm -> capture, and cancellation.

Each step is recorded in the saga log as started before it runs (its compensation is then known
even if its outcome is not) and as done after. Any failure rolls back what is open, in reverse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from bookline.domain.booking import BookingStatus, Outcome
from bookline.domain.errors import (
    BooklineError,
    Conflict,
    DependencyTimeout,
    DependencyUnavailable,
    HoldExpired,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    LockContention,
    PaymentDeclined,
    Unavailable,
)
from bookline.domain.money import Money
from bookline.domain.terms import CancellationTerms
from bookline.faults import fire, strikes
from bookline.saga import steps
from bookline.saga.compensation import return_money, rollback
from bookline.saga.deps import SagaDeps
from bookline.saga.lease import LeaseLost
from bookline.saga.spans import step_span
from bookline.saga.steps import BookingRequest
from bookline.saga.store import KeyTaken, StoredResponse
from bookline.telemetry import current_trace_id

log = logging.getLogger(__name__)


def request_hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def outcome_of(exc: Exception) -> Outcome:
    if isinstance(exc, Unavailable):
        return Outcome.UNAVAILABLE
    if isinstance(exc, LockContention):
        return Outcome.CONTENTION
    if isinstance(exc, PaymentDeclined):
        return Outcome.DECLINED
    if isinstance(exc, HoldExpired):
        return Outcome.EXPIRED
    if isinstance(exc, steps.PaymentOutcomeUnknown):
        return Outcome.PAYMENT_ERROR
    if isinstance(exc, BooklineError) and exc.details.get("dependency") == "payment-gateway":
        return Outcome.PAYMENT_ERROR
    return Outcome.FAILED


def error_body(exc: Exception, booking: dict[str, Any]) -> StoredResponse:
    if isinstance(exc, BooklineError):
        details = {k: v for k, v in exc.details.items() if k != "authorization_id"}
        status, code, message = exc.status, exc.code, exc.message
    else:
        status, code, message, details = 500, "internal_error", "an internal error occurred", {}
    body = {
        "error": {"code": code, "message": message, **details, **booking},
        "trace_id": current_trace_id(),
    }
    return StoredResponse(status, body)


CRASH_EXIT_CODE = 70
CRASH_FLUSH_TIMEOUT_S = 1.0


def _maybe_crash(deps: SagaDeps, point: str, span: trace.Span, rng: random.Random) -> None:
    """Crash points: exit hard mid-saga, as a killed process would, so that recovery must finish or
    compensate the booking. ``settings.crash_at`` (tests) always crashes at its point; the fault
    file's ``crash.<point>`` crashes with its probability, and first leaves in the trace where the
    process died: the fault event on ``booking.create``, that span ended as ERROR, and both flushed."""
    if deps.settings.crash_at == point:
        log.error("crash point %s reached: exiting hard", point)
        os._exit(CRASH_EXIT_CODE)
    rate = getattr(deps.faults.current().crash, point) if deps.faults is not None else None
    if not strikes(rate, rng):
        return
    fault = f"crash.{point}"
    fire(span, fault)
    span.set_status(Status(StatusCode.ERROR, f"booking-service crashed at {point} (fault {fault})"))
    span.end()
    log.error("fault %s fired: booking-service exits hard at saga point %s", fault, point)
    deps.flush_telemetry(CRASH_FLUSH_TIMEOUT_S)
    os._exit(CRASH_EXIT_CODE)


def taken_over(exc: LeaseLost, span: trace.Span, ids: dict[str, str]) -> StoredResponse:
    """The answer of a replica whose booking another one took over (this one stalled past its lease):
    the new owner finishes or compensates it and stores the answer the Idempotency-Key then replays."""
    log.warning("%s: stopping without writing or compensating", exc.message)
    span.set_attribute("booking.outcome", Outcome.FAILED.value)
    span.set_status(Status(StatusCode.ERROR, exc.message))
    body = {
        "error": {
            "code": "booking_taken_over",
            "message": "this booking is being finished by another replica; retry with the same Idempotency-Key",
            **ids,
        },
        "trace_id": current_trace_id(),
    }
    return StoredResponse(503, body)


def replay(row: Any, body_hash: str) -> StoredResponse:
    """The answer for a key that was seen before (invariant 4)."""
    if row.request_hash != body_hash:
        raise IdempotencyKeyReused(
            "idempotency_key_reused", "this Idempotency-Key was used with a different request body"
        )
    if row.status != "done":
        raise IdempotencyInFlight(
            "idempotency_in_flight", "a request with this Idempotency-Key is still being processed"
        )
    return StoredResponse(row.response_status, json.loads(row.response_body))


class Orchestrator:
    def __init__(self, deps: SagaDeps, *, rng: random.Random | None = None) -> None:
        self.deps = deps
        self.rng = rng or random.Random()

    async def create_booking(self, req: BookingRequest, *, key: str | None, body_hash: str) -> StoredResponse:
        deps = self.deps
        guarded = key is not None and not deps.settings.unsafe_disable_idempotency
        if guarded:
            seen = await deps.store.find_key(key)
            if seen is not None:
                return replay(seen, body_hash)
        started = time.monotonic()
        ids = {"booking_id": req.booking_id, "reservation_id": req.reservation_id}
        with step_span(deps.tracer, "booking.create") as span:
            span.set_attribute("booking.id", req.booking_id)
            span.set_attribute("booking.user_id", req.user_id)
            span.set_attribute("booking.source", req.source)
            span.set_attribute("booking.reservation_id", req.reservation_id)
            # validation against the inventory happens before anything is written
            free_rooms = await self._validated_rooms(req, span)
            room_id, quote, early = None, None, None
            try:
                quote = await steps.price_quote(deps, req, free_rooms)
                room_id = quote["room_id"]
                span.set_attribute("booking.room_id", room_id)
            except BooklineError as exc:
                early = exc
            row = self._booking_row(req, span, room_id, quote)
            try:
                # the hold is registered (as started) in the same transaction that records the booking,
                # whose lease is this replica's from then on
                lease = await deps.store.start_booking(
                    key=key if guarded else None,
                    request_hash=body_hash,
                    booking=row,
                    steps=None if early else {"hold": "started"},
                )
            except KeyTaken:
                seen = await deps.store.find_key(key) if key else None
                if seen is None:
                    raise
                span.set_attribute("booking.idempotent_replay", True)
                return replay(seen, body_hash)
            async with deps.store.keeping(lease):
                try:
                    try:
                        if early is not None:
                            raise early
                        assert room_id is not None and quote is not None
                        response = await self._run(req, room_id, quote, span, key if guarded else None)
                    except LeaseLost:
                        raise
                    except Exception as exc:  # noqa: BLE001 - every failure ends in a rollback and a stored answer
                        response = await self._fail(req, exc, span, key if guarded else None, ids)
                except LeaseLost as exc:
                    response = taken_over(exc, span, ids)
        status = "success" if response.status == 201 else ("timeout" if response.status == 504 else "failed")
        log.info("booking %s ended %s (%d)", req.booking_id, status, response.status)
        deps.instruments.attempts.add(1, {"booking.status": status, "booking.source": req.source})
        deps.instruments.duration.record((time.monotonic() - started) * 1000, {"booking.status": status})
        return response

    async def _validated_rooms(self, req: BookingRequest, span: trace.Span) -> list[dict]:
        try:
            return await steps.check_availability(self.deps, req)
        except BooklineError as exc:
            span.set_attribute("booking.outcome", Outcome.FAILED.value)
            span.set_status(Status(StatusCode.ERROR, exc.message))
            span.record_exception(exc)
            raise

    def _booking_row(
        self, req: BookingRequest, span: trace.Span, room_id: str | None, quote: dict | None
    ) -> dict[str, Any]:
        ctx = span.get_span_context()
        return {
            "room_id": room_id,
            "room_type": quote.get("room_type") if quote else None,
            "terms": json.dumps(quote["cancellation"]) if quote and quote.get("cancellation") else None,
            "guest_name": req.guest.name,
            "guest_email": req.guest.email,
            "guest_phone": req.guest.phone,
            "quote_id": quote["quote_id"] if quote else None,
            "total_minor": quote["total_minor"] if quote else None,
            "currency": quote["currency"] if quote else None,
            "booking_id": req.booking_id,
            "reservation_id": req.reservation_id,
            "user_id": req.user_id,
            "source": req.source,
            "property_id": req.property_id,
            "check_in": req.stay.check_in,
            "check_out": req.stay.check_out,
            "guests": req.guests,
            "payment_method": req.payment_method,
            "card_last_four": req.card_last_four,
            "trace_parent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}",
        }

    async def _run(
        self, req: BookingRequest, room_id: str, quote: dict, span: trace.Span, key: str | None
    ) -> StoredResponse:
        deps, store, bid = self.deps, self.deps.store, req.booking_id
        await steps.acquire_lock(deps, req, room_id)
        await store.record(bid, {"hold": "done", "authorize": "started"})
        _maybe_crash(deps, "after_hold", span, self.rng)
        auth = await steps.process_payment(deps, req, amount_minor=quote["total_minor"], currency=quote["currency"])
        await store.record(bid, {"authorize": "done", "confirm": "started"}, payment_transaction_id=auth["id"])
        _maybe_crash(deps, "after_authorize", span, self.rng)
        try:
            confirmation = await steps.confirm(deps, req, room_id=room_id, auth=auth, quote=quote)
        except DependencyTimeout:
            # the outcome is unknown: the booking may exist; if it does, go forward
            confirmation = await deps.confirmation.find(req.reservation_id)
            if confirmation is None:
                raise
        code = confirmation["confirmation_code"]
        # not written down until the saga's last write: a crash from here on leaves the confirm step
        # open, and recovery then finds the booking at confirmation-service and completes it
        span.set_attribute("booking.confirmation_code", code)
        _maybe_crash(deps, "after_confirm", span, self.rng)
        captured = await self.capture_payment(req.reservation_id, auth["id"], quote["total_minor"])
        body = {
            "booking_id": bid,
            "reservation_id": req.reservation_id,
            "confirmation_code": code,
            "status": BookingStatus.CONFIRMED.value,
            "room_id": room_id,
            "room_type": quote.get("room_type"),
            "total_minor": quote["total_minor"],
            "currency": quote["currency"],
            "quote_id": quote["quote_id"],
            "cancellation": quote.get("cancellation"),
            "trace_id": current_trace_id(),
        }
        response = StoredResponse(201, body)
        await store.finish(
            bid,
            status=BookingStatus.CONFIRMED,
            key=key,
            response=response,
            # a failed capture stays open for recovery to retry
            steps={"confirm": "done", "capture": "done" if captured else "started"},
            confirmation_code=code,
            outcome=Outcome.CONFIRMED.value,
        )
        span.set_attribute("booking.outcome", Outcome.CONFIRMED.value)
        span.set_status(Status(StatusCode.OK))
        return response

    async def capture_payment(self, reservation_id: str, auth_id: str, amount_minor: int) -> bool:
        """Capture after confirmation; a failure leaves the step open for recovery to retry."""
        try:
            await steps.capture(self.deps, reservation_id=reservation_id, auth_id=auth_id, amount_minor=amount_minor)
            return True
        except BooklineError as exc:
            log.warning("capture of %s failed, recovery will retry: %s", reservation_id, exc.message)
            return False

    async def _fail(
        self, req: BookingRequest, exc: Exception, span: trace.Span, key: str | None, ids: dict
    ) -> StoredResponse:
        outcome = outcome_of(exc)
        message = exc.message if isinstance(exc, BooklineError) else "an internal error occurred"
        if not isinstance(exc, BooklineError):
            log.exception("booking %s failed unexpectedly", req.booking_id)
        span.set_attribute("booking.outcome", outcome.value)
        span.set_status(Status(StatusCode.ERROR, message))
        span.record_exception(exc)
        booking = await self.deps.store.get(req.booking_id)
        await rollback(self.deps, booking, reason=outcome.value)
        response = error_body(exc, ids)
        await self.deps.store.finish(
            req.booking_id,
            status=BookingStatus.FAILED,
            key=key,
            response=response,
            outcome=outcome.value,
            failure_code=response.body["error"]["code"],
        )
        return response

    async def cancel_booking(self, booking_id: str) -> dict:
        """Cancel a confirmed booking: the confirmation (which frees the nights), then the refund."""
        deps = self.deps
        with step_span(deps.tracer, "booking.cancel") as span:
            span.set_attribute("booking.id", booking_id)
            booking = await deps.store.get(booking_id)
            span.set_attribute("booking.reservation_id", booking.reservation_id)
            if booking.status == BookingStatus.CANCELLED.value:
                return await self.view(booking_id)
            if booking.status != BookingStatus.CONFIRMED.value:
                raise Conflict("not_cancellable", f"a {booking.status} booking cannot be cancelled")
            lease = await deps.store.claim(booking_id, booking.fence)
            if lease is None:
                raise Conflict("booking_busy", "this booking is being worked on; try again shortly")
            async with deps.store.keeping(lease):
                await self._settle_capture(booking)
                # the terms the stay was sold on decide, once, what the cancellation refunds and keeps
                refund, penalty = cancellation_amounts(booking, datetime.now(UTC))
                span.set_attribute("payment.refund_minor", refund)
                span.set_attribute("booking.cancellation_penalty_minor", penalty)
                await deps.store.record(
                    booking_id, {"cancel": "started"}, refund_minor=refund, cancellation_penalty_minor=penalty
                )
                await self.finish_cancel(await deps.store.get(booking_id))
            return await self.view(booking_id)

    async def _settle_capture(self, booking: Any) -> None:
        """A booking whose capture failed (recovery retries it) is captured before it is cancelled: a
        late cancellation keeps its penalty from the captured money, and a refund needs a capture."""
        if (await self.deps.store.steps(booking.booking_id)).get("capture") != "started":
            return
        if not await self.capture_payment(booking.reservation_id, booking.payment_transaction_id, booking.total_minor):
            raise DependencyUnavailable(
                "payment_not_settled", "the payment of this booking is still being settled; try again shortly"
            )
        await self.deps.store.record(booking.booking_id, {"capture": "done"})

    async def finish_cancel(self, booking: Any) -> None:
        """The idempotent part of a cancellation, also run by recovery."""
        deps = self.deps
        refund, penalty = stored_cancellation_amounts(booking)
        with step_span(deps.tracer, "booking.restore_inventory") as span:
            span.set_attribute("booking.reservation_id", booking.reservation_id)
            await deps.confirmation.cancel(booking.reservation_id, refund_minor=refund, penalty_minor=penalty)
            # only booking-service may give booked nights back, and only once the booking is cancelled
            await deps.availability.restore_inventory(booking.reservation_id)
        await deps.store.finish(
            booking.booking_id,
            status=BookingStatus.CANCELLED,
            key=None,
            response=None,
            steps={"cancel": "done", "refund": "started"},
        )
        try:
            await return_money(deps, booking, amount_minor=refund)
        except BooklineError as exc:
            log.warning("refund of %s failed, recovery will retry: %s", booking.booking_id, exc.message)
            return
        await deps.store.record(booking.booking_id, {"refund": "done"})

    async def view(self, booking_id: str) -> dict:
        row = await self.deps.store.get(booking_id)
        step_status = await self.deps.store.steps(booking_id)
        return booking_view(row, step_status)


def cancellation_amounts(booking: Any, cancelled_at: datetime) -> tuple[int, int]:
    """(refund, penalty) in minor units of cancelling ``booking`` at ``cancelled_at``, under its terms
    (a booking sold before terms existed cancels for free)."""
    paid = Money(booking.total_minor or 0, booking.currency or "XXX")
    if not booking.terms:
        return paid.minor, 0
    refund, penalty = CancellationTerms.from_dict(json.loads(booking.terms)).refund_of(paid, cancelled_at)
    return refund.minor, penalty.minor


def stored_cancellation_amounts(booking: Any) -> tuple[int, int]:
    """What the cancellation decided; a cancellation recorded before amounts were kept refunds all."""
    if booking.refund_minor is None:
        return booking.total_minor or 0, 0
    return booking.refund_minor, booking.cancellation_penalty_minor or 0


def _stay(row: Any) -> dict:
    """What was booked: the room, the nights, the guests and the price."""
    return {
        "property_id": row.property_id,
        "room_id": row.room_id,
        "room_type": row.room_type,
        "check_in": row.check_in.isoformat(),
        "check_out": row.check_out.isoformat(),
        "guests": row.guests,
        "total_minor": row.total_minor,
        "currency": row.currency,
        "cancellation": json.loads(row.terms) if row.terms else None,
    }


def _trace_id(row: Any) -> str | None:
    return row.trace_parent.split("-")[1] if row.trace_parent else None


def booking_summary(row: Any) -> dict:
    """A booking as a customer's list shows it (``GET /bookings``)."""
    return {
        "booking_id": row.booking_id,
        "status": row.status,
        "confirmation_code": row.confirmation_code,
        **_stay(row),
        "created_at": row.created_at,
        "trace_id": _trace_id(row),
    }


def booking_view(row: Any, step_status: dict[str, str]) -> dict:
    payment = "none"
    if step_status.get("refund") == "done":
        payment = "refunded"
    elif step_status.get("refund") == "started":
        payment = "refund_pending"
    elif step_status.get("capture") == "done":
        payment = "captured"
    elif step_status.get("authorize") == "compensated":
        payment = "voided"
    elif step_status.get("authorize") == "done":
        payment = "authorized"
    return {
        "booking_id": row.booking_id,
        "reservation_id": row.reservation_id,
        "status": row.status,
        "outcome": row.outcome,
        "failure_code": row.failure_code,
        "confirmation_code": row.confirmation_code,
        "user_id": row.user_id,
        "source": row.source,
        "guest": {"name": row.guest_name, "email": row.guest_email, "phone": row.guest_phone},
        **_stay(row),
        "refund_minor": row.refund_minor,
        "cancellation_penalty_minor": row.cancellation_penalty_minor,
        "payment": {
            "method": row.payment_method,
            "card_last_four": row.card_last_four,
            "transaction_id": row.payment_transaction_id,
            "status": payment,
        },
        "steps": step_status,
        "trace_id": _trace_id(row),
    }
