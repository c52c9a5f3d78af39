"""Recovery of interrupted sagas: a booking-service that crashed, or a step whose compensation,
capture or refund failed, is finished or compensated here, in the background, by any replica.

A stalled pending booking goes forward only if confirmation-service already holds its booking;
otherwise it is rolled back. Each recovery is its own trace, linked to the booking's original one.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation

from bookline.domain.booking import BookingStatus, Outcome
from bookline.saga.compensation import return_money, rollback
from bookline.saga.orchestrator import Orchestrator, stored_cancellation_amounts
from bookline.saga.store import OPEN, StoredResponse
from bookline.saga.trace_links import link_to
from bookline.services.common.periodic import Periodic
from bookline.telemetry import current_trace_id

log = logging.getLogger(__name__)


class Recovery:
    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator
        self.deps = orchestrator.deps
        self.job = Periodic("saga-recovery", self.deps.settings.saga_recovery_interval_s, self.recover_once)

    async def recover_once(self) -> int:
        stale_before = time.time() - self.deps.settings.saga_stale_after_s
        done = 0
        # a quiet poll every few seconds must not leave a root trace of its SELECT each time
        with suppress_instrumentation():
            stalled = await self.deps.store.needing_recovery(stale_before=stale_before)
        for booking in stalled:
            # one replica takes the booking's lease; the others (and the replica that died, if it
            # comes back) can no longer write its saga log
            lease = await self.deps.store.claim(booking.booking_id, booking.fence)
            if lease is None:
                continue
            try:
                async with self.deps.store.keeping(lease):
                    await self.recover(booking)
                done += 1
            except Exception as exc:  # noqa: BLE001 - left open, retried on a later pass
                log.warning("recovery of %s failed: %s", booking.booking_id, exc)
        return done

    async def recover(self, booking: Any) -> str:
        deps = self.deps
        with deps.tracer.start_as_current_span("booking.recover", links=link_to(booking.trace_parent)) as span:
            span.set_attribute("booking.id", booking.booking_id)
            span.set_attribute("booking.reservation_id", booking.reservation_id)
            steps = await deps.store.steps(booking.booking_id)
            action = await self._act(booking, steps)
            span.set_attribute("booking.recovery.action", action)
            log.info("recovered booking %s: %s", booking.booking_id, action)
            return action

    async def _act(self, booking: Any, steps: dict[str, str]) -> str:
        deps, status = self.deps, booking.status
        if status == BookingStatus.PENDING.value:
            if steps.get("confirm") in OPEN:
                confirmation = await deps.confirmation.find(booking.reservation_id)
                if confirmation is not None:
                    await self._complete(booking, confirmation)
                    return "completed"
            await self._abandon(booking)
            return "compensated"
        if status == BookingStatus.CONFIRMED.value and steps.get("cancel") == "started":
            # the guest asked to cancel and the first attempt failed part-way: finish it
            await self.orchestrator.finish_cancel(booking)
            return "cancelled"
        if status == BookingStatus.CONFIRMED.value and steps.get("capture") == "started":
            if not await self.orchestrator.capture_payment(
                booking.reservation_id, booking.payment_transaction_id, booking.total_minor
            ):
                return "capture_failed"
            await deps.store.record(booking.booking_id, {"capture": "done"})
            return "captured"
        if status == BookingStatus.CANCELLED.value:
            if steps.get("cancel") == "started":
                await self.orchestrator.finish_cancel(booking)
                return "cancelled"
            if steps.get("refund") == "started":
                # what the cancellation decided under the booking's terms, not everything captured
                refund, _penalty = stored_cancellation_amounts(booking)
                await return_money(deps, booking, amount_minor=refund)
                await deps.store.record(booking.booking_id, {"refund": "done"})
                return "refunded"
        if status == BookingStatus.FAILED.value:
            await rollback(deps, booking, reason=booking.outcome or Outcome.FAILED.value)
            return "compensated"
        return "nothing"

    async def _complete(self, booking: Any, confirmation: dict) -> None:
        deps = self.deps
        code = confirmation["confirmation_code"]
        await deps.store.record(booking.booking_id, {"confirm": "done", "capture": "started"}, confirmation_code=code)
        captured = await self.orchestrator.capture_payment(
            booking.reservation_id, booking.payment_transaction_id, booking.total_minor
        )
        body = {
            "booking_id": booking.booking_id,
            "reservation_id": booking.reservation_id,
            "confirmation_code": code,
            "status": BookingStatus.CONFIRMED.value,
            "room_id": booking.room_id,
            "room_type": booking.room_type,
            "total_minor": booking.total_minor,
            "currency": booking.currency,
            "quote_id": booking.quote_id,
            "cancellation": json.loads(booking.terms) if booking.terms else None,
            "trace_id": booking.trace_parent.split("-")[1] if booking.trace_parent else None,
        }
        await deps.store.finish(
            booking.booking_id,
            status=BookingStatus.CONFIRMED,
            key=await deps.store.key_of(booking.booking_id),
            response=StoredResponse(201, body),
            steps={"capture": "done"} if captured else None,
            outcome=Outcome.CONFIRMED.value,
        )

    async def _abandon(self, booking: Any) -> None:
        deps = self.deps
        await rollback(deps, booking, reason="interrupted")
        body = {
            "error": {
                "code": "booking_interrupted",
                "message": "the booking was interrupted and has been rolled back; nothing was charged",
                "booking_id": booking.booking_id,
                "reservation_id": booking.reservation_id,
            },
            "trace_id": current_trace_id(),
        }
        await deps.store.finish(
            booking.booking_id,
            status=BookingStatus.FAILED,
            key=await deps.store.key_of(booking.booking_id),
            response=StoredResponse(503, body),
            outcome=Outcome.FAILED.value,
            failure_code="booking_interrupted",
        )
