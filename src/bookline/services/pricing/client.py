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
        issue_quotes: bool = False,
    ) -> list[dict[str, Any]]:
        """The price of the stay in each listed room that has a rate plan (others are left out); with
        ``issue_quotes``, each with a ``quote_id`` a booking is charged exactly."""
        body = await self.call(
            "POST",
            "/prices",
            json={
                "property_id": property_id,
                "room_ids": room_ids,
                "check_in": _iso(check_in),
                "check_out": _iso(check_out),
                "guests": guests,
                "issue_quotes": issue_quotes,
            },
            # writes nothing, or quotes nobody holds yet: a repeat only leaves an unused quote behind
            retries=2,
        )
        return list(body["prices"])

    async def create_quote(
        self,
        *,
        property_id: str,
        check_in: date | str,
        check_out: date | str,
        guests: int,
        room_id: str | None = None,
        room_ids: list[str] | None = None,
    ) -> dict[str, Any]:
        """A new quote for the stay in one room, or in the cheapest of ``room_ids`` (not retried:
        each call issues a quote)."""
        rooms = {"room_id": room_id} if room_ids is None else {"room_ids": room_ids}
        return dict(
            await self.call(
                "POST",
                "/quotes",
                json={
                    "property_id": property_id,
                    **rooms,
                    "check_in": _iso(check_in),
                    "check_out": _iso(check_out),
                    "guests": guests,
                },
            )
        )

    async def honour_quote(
        self,
        quote_id: str,
        *,
        property_id: str,
        check_in: date | str,
        check_out: date | str,
        guests: int,
        room_id: str | None = None,
    ) -> dict[str, Any]:
        """The quote, if it still holds for this stay; else 409 ``quote_expired`` or ``price_changed``."""
        body: dict[str, Any] = {
            "property_id": property_id,
            "check_in": _iso(check_in),
            "check_out": _iso(check_out),
            "guests": guests,
        }
        if room_id is not None:
            body["room_id"] = room_id
        # a repeat issues at most one more replacement quote when the price changed
        return dict(await self.call("POST", f"/quotes/{quote(quote_id, safe='')}/honour", json=body, retries=2))

    async def get_quote(self, quote_id: str) -> dict[str, Any]:
        """A quote by id, with ``expired`` telling whether it may still be honoured."""
        return dict(await self.call("GET", f"/quotes/{quote(quote_id, safe='')}", retries=2))
