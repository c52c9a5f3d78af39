"""The forward steps of the booking saga, each under the span TELEMETRY.md names for it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from opentelemetry.trace import SpanKind, Status, StatusCode

from bookline.domain.errors import (
    BooklineError,
    DependencyFailed,
    DependencyTimeout,
    IdempotencyInFlight,
    InvalidRequest,
    LockContention,
    PaymentDeclined,
    Unavailable,
)
from bookline.domain.guest import Guest
from bookline.domain.stay import StayDates
from bookline.faults import fire
from bookline.saga.deps import SagaDeps, payment_key
from bookline.saga.spans import step_span


@dataclass(frozen=True)
class BookingRequest:
    booking_id: str
    reservation_id: str
    user_id: str
    source: str
    property_id: str
    stay: StayDates
    guests: int
    room_id: str | None
    payment_method: str
    payment_token: str
    card_last_four: str
    guest: Guest
    room_type: str | None = None
    quote_id: str | None = None


class PaymentOutcomeUnknown(DependencyTimeout):
    """The gateway never answered and no authorization can be found under our key."""

    code = "payment_timeout"


async def check_availability(deps: SagaDeps, req: BookingRequest) -> list[dict]:
    """The free rooms for the stay; raises 404/422 for a property or room that cannot take the guests."""
    with step_span(deps.tracer, "booking.check_availability") as span:
        span.set_attribute("booking.check_in", req.stay.check_in.isoformat())
        span.set_attribute("booking.check_out", req.stay.check_out.isoformat())
        span.set_attribute("booking.guests", req.guests)
        span.set_attribute("booking.property_id", req.property_id)
        try:
            result = await deps.availability.search(
                property_id=req.property_id,
                check_in=req.stay.check_in,
                check_out=req.stay.check_out,
                guests=req.guests,
                room_id=req.room_id,
                room_type=req.room_type,
            )
        except DependencyFailed as exc:
            span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        if req.guests > result["max_capacity"]:
            which = "" if req.room_id is not None else f"{req.room_type} " if req.room_type else "of this property "
            raise InvalidRequest(
                "guests_exceed_capacity",
                f"no room {which}takes {req.guests} guests",
                max_capacity=result["max_capacity"],
            )
        span.set_attribute("booking.available_count", len(result["rooms"]))
        span.set_status(Status(StatusCode.OK))
        return result["rooms"]


async def price_quote(deps: SagaDeps, req: BookingRequest, free_rooms: list[dict]) -> dict:
    """The quote the booking is charged: the guest's own quote, honoured (409 ``price_changed`` or
    ``quote_expired`` when it no longer holds), or a new one for the room asked for or else the cheapest
    free room that fits (equal prices: one at random, to spread guests over them)."""
    if not free_rooms:
        raise Unavailable("unavailable", "no room is free for these dates")
    free = {r["room_id"]: r for r in free_rooms}
    with step_span(deps.tracer, "booking.price_quote") as span:
        span.set_attribute("booking.nights", req.stay.nights)
        span.set_attribute("pricing.quote_reused", req.quote_id is not None)
        stay = {"property_id": req.property_id, "check_in": req.stay.check_in, "check_out": req.stay.check_out,
                "guests": req.guests}  # fmt: skip
        try:
            if req.quote_id is not None:
                quote = await deps.pricing.honour_quote(req.quote_id, room_id=req.room_id, **stay)
                if quote["room_id"] not in free:
                    raise Unavailable("unavailable", "the quoted room is no longer free for these dates")
            else:
                rooms = [req.room_id] if req.room_id is not None else list(free)
                quote = await deps.pricing.create_quote(room_ids=rooms, **stay)
        except BooklineError as exc:
            if exc.code in ("price_changed", "quote_expired"):
                span.add_event(exc.code, {"pricing.quote_id": req.quote_id or ""})
            span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        room = free.get(quote["room_id"], {})
        quote["room_type"] = room.get("room_type")
        span.set_attribute("booking.room_id", quote["room_id"])
        if quote["room_type"]:
            span.set_attribute("booking.room_type", quote["room_type"])
        span.set_attribute("pricing.quote_id", quote["quote_id"])
        span.set_attribute("pricing.total_minor", quote["total_minor"])
        span.set_attribute("pricing.currency", quote["currency"])
        span.set_attribute("pricing.rules_applied", list(quote["rules_applied"]))
        return quote


async def acquire_lock(deps: SagaDeps, req: BookingRequest, room_id: str) -> dict:
    """Place the hold (the reservation lock); contention is an event and an ERROR on this span."""
    ttl_fault = deps.faults.current().hold.ttl_seconds if deps.faults is not None else None
    ttl = deps.settings.hold_ttl_seconds if ttl_fault is None else ttl_fault
    with step_span(deps.tracer, "booking.acquire_lock") as span:
        if ttl_fault is not None:
            fire(span, "hold.ttl_seconds")
        span.set_attribute("booking.reservation_id", req.reservation_id)
        span.set_attribute("booking.lock_type", "pessimistic")
        span.set_attribute("booking.lock_ttl_ms", int(ttl * 1000))
        try:
            hold = await deps.availability.place_hold(
                reservation_id=req.reservation_id,
                property_id=req.property_id,
                room_id=room_id,
                check_in=req.stay.check_in,
                check_out=req.stay.check_out,
                ttl_seconds=ttl,
            )
        except LockContention as exc:
            span.set_attribute("booking.lock_acquired", False)
            span.add_event(
                "lock_contention",
                {
                    "booking.contention_reason": str(exc.details.get("contention_reason") or "unknown"),
                    "booking.competing_reservation": str(exc.details.get("competing_reservation") or ""),
                },
            )
            span.set_status(Status(StatusCode.ERROR, "Lock contention"))
            deps.instruments.contentions.add(1, {"booking.property_id": req.property_id})
            raise
        span.set_attribute("booking.lock_acquired", True)
        span.set_status(Status(StatusCode.OK))
        return hold


async def process_payment(deps: SagaDeps, req: BookingRequest, *, amount_minor: int, currency: str) -> dict:
    """Authorize the quoted amount. A timeout is an unknown outcome: ask the gateway under our
    idempotency key before deciding, and retry (same key, so never a second charge) if it has nothing."""
    key = payment_key("auth", req.reservation_id)
    with step_span(deps.tracer, "booking.process_payment", SpanKind.CLIENT) as span:
        span.set_attribute("booking.reservation_id", req.reservation_id)
        span.set_attribute("payment.method", req.payment_method)
        span.set_attribute("payment.currency", currency)
        span.set_attribute("payment.card_last_four", req.card_last_four)
        attempt = 0
        started = time.monotonic()
        try:
            while True:
                attempt += 1
                span.set_attribute("payment.attempt", attempt)
                try:
                    auth = await deps.gateway.authorize(
                        token=req.payment_token,
                        amount_minor=amount_minor,
                        currency=currency,
                        reservation_id=req.reservation_id,
                        idempotency_key=key,
                        timeout=deps.settings.payment_timeout_s,
                    )
                    break
                except (DependencyTimeout, IdempotencyInFlight) as exc:
                    # the outcome is unknown (or our first attempt is still being processed)
                    kind = "timeout" if isinstance(exc, DependencyTimeout) else "in_flight"
                    span.add_event("payment_retry", {"payment.attempt": attempt, "error.type": kind})
                    if kind == "in_flight":
                        await asyncio.sleep(deps.settings.payment_timeout_s / 2)
                    found = await deps.gateway.find_by_idempotency_key(key)
                    if found is not None:
                        auth = found
                        break
                    if attempt >= deps.settings.payment_max_attempts:
                        raise PaymentOutcomeUnknown(
                            "payment_timeout", "the payment gateway did not answer in time"
                        ) from None
        except PaymentDeclined as exc:
            reason = str(exc.details.get("decline_reason", "declined"))
            span.set_attribute("payment.status", "declined")
            if exc.details.get("authorization_id"):
                span.set_attribute("payment.transaction_id", str(exc.details["authorization_id"]))
            span.add_event("payment_declined", {"payment.decline_reason": reason})
            _outcome(deps, "declined", req.payment_method)
            raise
        except BooklineError as exc:
            span.set_attribute("payment.status", "error")
            span.set_status(Status(StatusCode.ERROR, exc.message))
            _outcome(deps, "error", req.payment_method)
            raise
        finally:
            span.set_attribute("payment.gateway_latency_ms", round((time.monotonic() - started) * 1000, 1))
        if auth.get("status") == "declined":  # a timed-out attempt that the gateway declined
            reason = str(auth.get("decline_reason", "declined"))
            span.set_attribute("payment.status", "declined")
            span.add_event("payment_declined", {"payment.decline_reason": reason})
            _outcome(deps, "declined", req.payment_method)
            raise PaymentDeclined("payment_declined", "the card was declined", decline_reason=reason)
        span.set_attribute("payment.transaction_id", auth["id"])
        span.set_attribute("payment.status", auth["status"])
        _outcome(deps, auth["status"], req.payment_method)
        return auth


def _outcome(deps: SagaDeps, status: str, method: str) -> None:
    deps.instruments.payment_outcomes.add(1, {"payment.status": status, "payment.method": method})


async def confirm(deps: SagaDeps, req: BookingRequest, *, room_id: str, auth: dict, quote: dict) -> dict:
    """Commit the hold into booked nights and create the booking (confirmation-service)."""
    with step_span(deps.tracer, "booking.confirm") as span:
        span.set_attribute("booking.reservation_id", req.reservation_id)
        span.set_attribute("payment.transaction_id", auth["id"])
        try:
            confirmation = await deps.confirmation.confirm(
                booking_id=req.booking_id,
                reservation_id=req.reservation_id,
                property_id=req.property_id,
                room_id=room_id,
                check_in=req.stay.check_in,
                check_out=req.stay.check_out,
                user_id=req.user_id,
                total_minor=quote["total_minor"],
                currency=quote["currency"],
                payment_transaction_id=auth["id"],
                room_type=quote.get("room_type"),
                guest=req.guest.as_dict(),
                details=stay_details(quote),
            )
        except BooklineError as exc:
            if exc.code == "hold_expired":
                span.add_event("hold_expired", {"booking.reservation_id": req.reservation_id})
            else:
                span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        span.set_attribute("booking.confirmation_code", confirmation["confirmation_code"])
        return confirmation


def stay_details(quote: dict) -> dict:
    """What the guest's e-mail shows of the price: each night, the taxes, the cancellation terms."""
    return {
        "nights": [{"night": str(n["night"]), "amount_minor": n["amount_minor"]} for n in quote["nights"]],
        "taxes_minor": quote["taxes_minor"],
        "cancellation": quote.get("cancellation"),
    }


async def capture(deps: SagaDeps, *, reservation_id: str, auth_id: str, amount_minor: int) -> dict:
    with step_span(deps.tracer, "payment.capture", SpanKind.CLIENT) as span:
        span.set_attribute("booking.reservation_id", reservation_id)
        span.set_attribute("payment.transaction_id", auth_id)
        try:
            result = await deps.gateway.capture(
                auth_id, idempotency_key=payment_key("capture", reservation_id), amount_minor=amount_minor
            )
        except BooklineError as exc:
            span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        span.set_attribute("payment.status", result["status"])
        return result
