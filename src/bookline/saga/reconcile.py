"""The payment reconciler of booking-service: money for a booking that can never be confirmed goes
back to the guest, whatever the saga believed when it ended.

The saga's own rollback voids or refunds what it knows of. What it cannot know is an authorization
that lands after it looked: the gateway was slow, the first attempt timed out, the retry met the
first one still in flight, and the lookup by idempotency key found nothing yet. So, once a failed or
cancelled booking has been quiet for ``reconcile_settle_after_s``, the reconciler reads the
gateway's own ledger for the reservation, once, and voids or refunds whatever is still held or
captured. A booking that needed a repair gets a ``booking.reconcile`` trace linked to its own; one
that was already right is only marked checked (no trace: checking is not an event).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import Status, StatusCode

from bookline.domain.booking import BookingStatus
from bookline.domain.errors import BooklineError
from bookline.saga.compensation import return_money
from bookline.saga.deps import SagaDeps
from bookline.saga.spans import step_span
from bookline.saga.trace_links import link_to
from bookline.services.common.periodic import Periodic

log = logging.getLogger(__name__)


def money_left(ledger: dict[str, Any]) -> int:
    """What the gateway still holds or keeps of a reservation: open authorizations plus captured
    and not refunded (in minor units)."""
    return int(ledger["open_minor"]) + int(ledger["captured_minor"]) - int(ledger["refunded_minor"])


def rightly_kept(booking: Any) -> int:
    """What the gateway keeps of a settled booking by right: a late cancellation's penalty."""
    if booking.status == BookingStatus.CANCELLED.value:
        return int(booking.cancellation_penalty_minor or 0)
    return 0


class PaymentReconciler:
    def __init__(self, deps: SagaDeps) -> None:
        self.deps = deps
        settings = deps.settings
        self.job = Periodic("payment-reconciler", settings.reconcile_interval_s, self.reconcile_once)

    async def reconcile_once(self) -> int:
        """Check every failed or cancelled booking that settled; returns how many needed a repair."""
        deps = self.deps
        settled_before = time.time() - deps.settings.reconcile_settle_after_s
        repaired = 0
        # the quiet check of the many bookings that are right leaves no trace; a repair does
        with suppress_instrumentation():
            unsettled = await deps.store.unsettled(settled_before=settled_before)
        for booking in unsettled:
            # one replica reconciles a booking: the one that takes its lease
            lease = await deps.store.claim(booking.booking_id, booking.fence)
            if lease is None:
                continue
            async with deps.store.keeping(lease):
                with suppress_instrumentation():
                    ledger = await deps.gateway.ledger(booking.reservation_id)
                left, kept = money_left(ledger), rightly_kept(booking)
                if left == kept:
                    await deps.store.mark_settled(booking.booking_id, "checked")
                    continue
                if left < kept:
                    # less than the penalty is left (a capture that never happened): nothing to return,
                    # and nothing the reconciler may take; the audit's money check names it
                    log.error("payment reconciler: cancelled booking %s kept %d of a %d penalty",
                              booking.booking_id, left, kept)  # fmt: skip
                    await deps.store.mark_settled(booking.booking_id, "unresolved")
                    continue
                try:
                    await self.repair(booking, ledger)
                except BooklineError as exc:  # the gateway failed: tried again on the next pass
                    log.warning("payment reconciler: repair of %s failed: %s", booking.booking_id, exc.message)
                    continue
            repaired += 1
        return repaired

    async def repair(self, booking: Any, ledger: dict[str, Any]) -> str:
        deps = self.deps
        with step_span(deps.tracer, "booking.reconcile", links=link_to(booking.trace_parent)) as span:
            span.set_attribute("booking.id", booking.booking_id)
            span.set_attribute("booking.reservation_id", booking.reservation_id)
            excess = money_left(ledger) - rightly_kept(booking)
            span.set_attribute("payment.amount_minor", excess)
            # a refund of its own (its own idempotency key): the cancellation's refund was another
            action = await return_money(
                deps, booking, amount_minor=excess if rightly_kept(booking) else None, purpose="reconcile-refund"
            )
            span.set_attribute("booking.reconcile.action", action)
            if action == "nothing_to_undo":
                # the money sits under an authorization the saga does not know: a person must look
                span.set_status(Status(StatusCode.ERROR, "money left that the booking does not reference"))
        if action == "nothing_to_undo":
            log.error(
                "payment reconciler: %s booking %s has money at the gateway it cannot return",
                booking.status,
                booking.booking_id,
            )
            await deps.store.mark_settled(booking.booking_id, "unresolved")
            return action
        log.warning(
            "payment reconciler: %s booking %s still had money at the gateway: %s",
            booking.status,
            booking.booking_id,
            action,
        )
        await deps.store.mark_settled(booking.booking_id, "repaired")
        return action
