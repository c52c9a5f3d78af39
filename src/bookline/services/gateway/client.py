"""Typed client of payment-gateway, used by booking-service (and by tests standing in for a browser
that tokenizes a card)."""

from __future__ import annotations

from typing import Any

from bookline.domain.errors import NotFound
from bookline.services.common.client import ServiceClient


def _key(idempotency_key: str) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key}


def _amount(amount_minor: int | None) -> dict[str, int]:
    return {} if amount_minor is None else {"amount_minor": amount_minor}


class GatewayClient(ServiceClient):
    service = "payment-gateway"

    async def tokenize(self, number: str, exp_month: int, exp_year: int, cvc: str) -> dict[str, Any]:
        body = {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": cvc}
        return await self.call("POST", "/v1/tokens", json=body)

    async def authorize(
        self,
        *,
        token: str,
        amount_minor: int,
        currency: str,
        reservation_id: str,
        idempotency_key: str,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Never retried here: after a timeout the outcome is unknown, and the caller decides (see
        :meth:`find_by_idempotency_key`). A decline raises ``PaymentDeclined``."""
        body = {
            "token": token,
            "amount_minor": amount_minor,
            "currency": currency,
            "reservation_id": reservation_id,
        }
        return await self.call("POST", "/v1/authorizations", json=body, headers=_key(idempotency_key), timeout=timeout)

    async def capture(self, auth_id: str, *, idempotency_key: str, amount_minor: int | None = None) -> dict[str, Any]:
        return await self.call(
            "POST",
            f"/v1/authorizations/{auth_id}/capture",
            json=_amount(amount_minor),
            headers=_key(idempotency_key),
            retries=2,
        )

    async def void(self, auth_id: str, *, idempotency_key: str) -> dict[str, Any]:
        return await self.call("POST", f"/v1/authorizations/{auth_id}/void", headers=_key(idempotency_key), retries=2)

    async def refund(self, auth_id: str, *, idempotency_key: str, amount_minor: int | None = None) -> dict[str, Any]:
        return await self.call(
            "POST",
            f"/v1/authorizations/{auth_id}/refund",
            json=_amount(amount_minor),
            headers=_key(idempotency_key),
            retries=2,
        )

    async def find_by_idempotency_key(self, key: str) -> dict[str, Any] | None:
        """The authorization an authorize call with this key made, or None if it made none."""
        try:
            return await self.call("GET", "/v1/authorizations", params={"idempotency_key": key}, retries=2)
        except NotFound:
            return None

    async def get(self, auth_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/v1/authorizations/{auth_id}", retries=2)

    async def ledger(self, reservation_id: str) -> dict[str, Any]:
        return await self.call("GET", "/v1/ledger", params={"reservation_id": reservation_id}, retries=2)
