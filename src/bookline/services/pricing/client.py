"""The typed HTTP client other services use to call pricing-engine."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import quote

from bookline.services.common.client import ServiceClient


def _iso(day: date | str) -> str:
    return day.isoformat() if isinstance(day, date) else day


class PricingClient(ServiceClient):
    service = "pricing-engine"

    async def price_rooms(
        self,
        *,
        property_id: str,
        room_ids: list[str],
        check_in: date | str,
        check_out: date | str,
        guests: int,
    ) -> list[dict[str, Any]]:
        """The price of the stay in each listed room that has a rate plan (others are left out)."""
        body = await self.call(
            "POST",
            "/prices",
            json={
                "property_id": property_id,
                "room_ids": room_ids,
                "check_in": _iso(check_in),
                "check_out": _iso(check_out),
                "guests": guests,
            },
            retries=2,  # writes nothing, so safe to repeat
        )
        return list(body["prices"])

    async def create_quote(
        self,
        *,
        property_id: str,
        room_id: str,
        check_in: date | str,
        check_out: date | str,
        guests: int,
    ) -> dict[str, Any]:
        """A new quote for the stay in one room (not retried: each call issues a quote)."""
        return dict(
            await self.call(
                "POST",
                "/quotes",
                json={
                    "property_id": property_id,
                    "room_id": room_id,
                    "check_in": _iso(check_in),
                    "check_out": _iso(check_out),
                    "guests": guests,
                },
            )
        )

    async def get_quote(self, quote_id: str) -> dict[str, Any]:
        """A quote by id, with ``expired`` telling whether it may still be honoured."""
        return dict(await self.call("GET", f"/quotes/{quote(quote_id, safe='')}", retries=2))
