"""Typed client of availability-service, used by booking-service and confirmation-service."""

from __future__ import annotations

from datetime import date

from bookline.services.common.client import ServiceClient


class AvailabilityClient(ServiceClient):
    service = "availability-service"

    async def list_properties(self, *, city: str | None = None, limit: int = 100, offset: int = 0) -> list[dict]:
        params: dict = {"limit": limit, "offset": offset}
        if city:
            params["city"] = city
        return (await self.call("GET", "/properties", params=params, retries=2))["properties"]

    async def get_property(self, property_id: str) -> dict:
        return await self.call("GET", f"/properties/{property_id}", retries=2)

    async def search(
        self,
        *,
        property_id: str,
        check_in: date,
        check_out: date,
        guests: int,
        room_id: str | None = None,
        room_type: str | None = None,
    ) -> dict:
        params: dict = {
            "property_id": property_id,
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "guests": guests,
        }
        if room_id:
            params["room_id"] = room_id
        if room_type:
            params["room_type"] = room_type
        return await self.call("GET", "/availability", params=params, retries=2)

    async def place_hold(
        self,
        *,
        reservation_id: str,
        property_id: str,
        room_id: str,
        check_in: date,
        check_out: date,
        ttl_seconds: float,
    ) -> dict:
        body = {
            "reservation_id": reservation_id,
            "property_id": property_id,
            "room_id": room_id,
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "ttl_seconds": ttl_seconds,
        }
        # safe to repeat: a hold is keyed by its reservation id
        return await self.call("POST", "/holds", json=body, retries=2)

    async def get_hold(self, reservation_id: str) -> dict:
        return await self.call("GET", f"/holds/{reservation_id}", retries=2)

    async def commit_hold(self, reservation_id: str) -> dict:
        return await self.call("POST", f"/holds/{reservation_id}/commit", retries=2)

    async def release_hold(self, reservation_id: str) -> dict:
        return await self.call("POST", f"/holds/{reservation_id}/release", retries=2)

    async def restore_inventory(self, reservation_id: str) -> dict:
        return await self.call("POST", f"/holds/{reservation_id}/restore", retries=2)
