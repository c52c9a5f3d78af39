"""Compensations of the booking saga, run in reverse under ``booking.rollback``.

Each one is idempotent and treats "nothing to undo" as success, so a rollback can be repeated by
recovery until every step it found open is compensated.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from bookline.domain.errors import BooklineError
from bookline.saga.deps import SagaDeps, payment_key
from bookline.saga.spans import step_span
from bookline.saga.store import OPEN

log = logging.getLogger(__name__)

# reverse order of the forward steps; capture and authorize are settled together (one payment)
ORDER = ("capture", "confirm", "authorize", "hold")


async def find_authorization(deps: SagaDeps, booking: Any) -> dict | None:
    """The gateway's record of this booking's authorization, by id or by our idempotency key."""
    if booking.payment_transaction_id:
        return await deps.gateway.get(booking.payment_transaction_id)
    return await deps.gateway.find_by_idempotency_key(payment_key("auth", booking.reservation_id))


async def return_money(
    deps: SagaDeps, booking: Any, *, amount_minor: int | None = None, purpose: str = "refund"
) -> str:
    """Void an open authorization or refund a capture (all of it, or ``amount_minor`` of it: what a
    cancellation under the booking's terms gives back); returns what was done."""
    auth = await find_authorization(deps, booking)
    status = auth["status"] if auth else "none"
    refundable = status in ("captured", "partially_refunded")
    name = "payment.refund" if refundable else "payment.void"
    with step_span(deps.tracer, name, SpanKind.CLIENT) as span:
        span.set_attribute("booking.reservation_id", booking.reservation_id)
        if auth is None or not (refundable or status == "authorized"):
            span.set_attribute("payment.status", status)
            span.set_attribute("booking.rollback.nothing_to_undo", True)
            return "nothing_to_undo"
        span.set_attribute("payment.transaction_id", auth["id"])
        if refundable:
            owed = auth["captured_minor"] - auth["refunded_minor"] if amount_minor is None else amount_minor
            span.set_attribute("payment.refund_minor", owed)
            if owed == 0 or status == "refunded":
                span.set_attribute("payment.status", status)
                return "nothing_to_refund"
        try:
            if refundable:
                # the same key (and amount) on a retry: the gateway refunds once
                result = await deps.gateway.refund(
                    auth["id"], idempotency_key=payment_key(purpose, booking.reservation_id), amount_minor=amount_minor
                )
            else:
                result = await deps.gateway.void(
                    auth["id"], idempotency_key=payment_key("void", booking.reservation_id)
                )
        except BooklineError as exc:
            span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        span.set_attribute("payment.status", result["status"])
        return result["status"]


async def release_lock(deps: SagaDeps, booking: Any) -> None:
    with step_span(deps.tracer, "booking.release_lock") as span:
        span.set_attribute("booking.reservation_id", booking.reservation_id)
        try:
            result = await deps.availability.release_hold(booking.reservation_id)
        except BooklineError as exc:
            span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        span.set_attribute("booking.lock_released", bool(result["released"]))


async def restore_inventory(deps: SagaDeps, booking: Any) -> None:
    with step_span(deps.tracer, "booking.restore_inventory") as span:
        span.set_attribute("booking.reservation_id", booking.reservation_id)
        try:
            result = await deps.availability.restore_inventory(booking.reservation_id)
        except BooklineError as exc:
            span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        span.set_attribute("booking.restored_nights", int(result["restored_nights"]))


async def rollback(deps: SagaDeps, booking: Any, *, reason: str) -> bool:
    """Compensate every open step in reverse; True when all of them are compensated."""
    steps = await deps.store.steps(booking.booking_id)
    todo = [s for s in ORDER if steps.get(s) in OPEN]
    if not todo:
        return True
    with step_span(deps.tracer, "booking.rollback") as span:
        span.set_attribute("booking.rollback.reason", reason)
        span.set_attribute("booking.rollback.steps", todo)
        span.set_attribute("booking.reservation_id", booking.reservation_id)
        deps.instruments.rollbacks.add(1, {"booking.rollback.reason": reason})
        failed: list[str] = []
        money_settled = False
        for step in todo:
            try:
                if step in ("capture", "authorize"):
                    if not money_settled:
                        await return_money(deps, booking)
                        money_settled = True
                elif step == "confirm":
                    await restore_inventory(deps, booking)
                elif step == "hold":
                    await release_lock(deps, booking)
                await deps.store.record(booking.booking_id, {step: "compensated"})
            except Exception as exc:  # noqa: BLE001 - a failed compensation is retried by recovery
                log.warning("compensation %s of %s failed: %s", step, booking.booking_id, exc)
                failed.append(step)
        if failed:
            span.set_status(Status(StatusCode.ERROR, f"compensation failed: {', '.join(failed)}"))
            return False
        span.set_status(Status(StatusCode.OK))
        return True
