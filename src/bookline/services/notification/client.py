"""Typed client of notification-service's admin read API, used by confirmation-service's
notification reconciler and by ``bookline audit``."""

from __future__ import annotations

from typing import Any

from bookline.services.common.client import ServiceClient
from bookline.telemetry import ServiceTelemetry


class NotificationClient(ServiceClient):
    service = "notification-service"

    def __init__(self, base_url: str, telemetry: ServiceTelemetry, *, timeout: float, admin_token: str | None) -> None:
        super().__init__(base_url, telemetry, timeout=timeout)
        self._auth = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}

    async def sent_since(self, since: float) -> list[dict[str, Any]]:
        """Every notification sent since ``since`` (unix seconds): booking_id, kind, message_id, sent_at."""
        sent: list[dict[str, Any]] = []
        params: dict[str, Any] = {"since": since}
        while True:
            body = await self.call("GET", "/admin/notifications", params=params, headers=self._auth, retries=2)
            sent.extend(body["notifications"])
            if not body.get("next"):
                return sent
            params["after"] = body["next"]
