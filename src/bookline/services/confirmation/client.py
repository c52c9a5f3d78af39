"""Typed client of confirmation-service, used by booking-service."""

from __future__ import annotations

from typing import Any

from bookline.domain.errors import NotFound
from bookline.services.common.client import ServiceClient


class ConfirmationClient(ServiceClient):
    service = "confirmation-service"

    async def confirm(self, **booking: Any) -> dict:
        body = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in booking.items()}
        # safe to repeat: confirmation is keyed by the reservation id
        return await self.call("POST", "/confirmations", json=body, retries=2)

    async def find(self, reservation_id: str) -> dict | None:
        try:
            return await self.call("GET", f"/confirmations/{reservation_id}", retries=2)
        except NotFound:
            return None

    async def cancel(self, reservation_id: str, *, refund_minor: int, penalty_minor: int) -> dict:
        """Cancel the booking, recording what the cancellation refunds and keeps (for its e-mail)."""
        body = {"refund_minor": refund_minor, "cancellation_penalty_minor": penalty_minor}
        return await self.call("POST", f"/confirmations/{reservation_id}/cancel", json=body, retries=2)

    async def notice(self, reservation_id: str) -> dict:
        """What the guest's e-mail says, the guest's address included (notification-service only)."""
        return await self.call("GET", f"/confirmations/{reservation_id}/notice", retries=2)
