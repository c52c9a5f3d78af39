"""Who may call a route, for every service's ``api.py``: customers (booking-service's public API) and
other services (every internal endpoint). A route says it with a dependency:

    customer: Annotated[Customer, Depends(auth.customer)]        # any customer with a valid token
    dependencies=[Depends(auth.services("booking-service"))]     # only booking-service may call it

A missing or invalid credential answers 401 with ``WWW-Authenticate: Bearer``; a valid service
credential of a service the route does not list answers 403 ``service_forbidden``. Repeated failures
from one client address are rate limited (429). Both schemes appear in the OpenAPI document as HTTP
bearer security, so a client generator (and Schemathesis) knows to send a token.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bookline.auth.customers import Customer, CustomerTokens, Forbidden, Unauthenticated
from bookline.auth.services import InvalidServiceToken, ServiceTokens
from bookline.config import Settings
from bookline.services.common.ratelimit import RateLimits

_customer_bearer = HTTPBearer(
    auto_error=False, scheme_name="customer", description="a customer's JWT (`bookline token` makes one locally)"
)
_service_bearer = HTTPBearer(
    auto_error=False, scheme_name="service", description="a Bookline service's credential (a short-lived JWT)"
)
Bearer = HTTPAuthorizationCredentials | None
# addresses remembered for failing here (a flood from many addresses must not grow it without end)
MAX_SUSPECTS = 10_000


def challenge(realm: str, code: str | None) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a 401 (RFC 6750: no error attribute when no token came)."""
    value = f'Bearer realm="{realm}"' + (', error="invalid_token"' if code else "")
    return {"WWW-Authenticate": value}


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Auth:
    """The credentials one service accepts, with the limiter of failed attempts."""

    def __init__(
        self, settings: Settings, service: str, *, limits: RateLimits | None = None, customers: bool = False
    ) -> None:
        self.service = service
        self.unsafe_open = settings.unsafe_disable_service_auth
        self.limits = limits or RateLimits(settings)
        self._service_tokens = ServiceTokens.of(service, settings)
        self._customer_tokens = CustomerTokens(settings) if customers else None
        # addresses whose credentials failed here lately, and when
        self._suspects: dict[str, float] = {}
        self._failure_window_s = self.limits.window_s("failed_auth_per_address")

    async def _failed(self, request: Request, exc: Unauthenticated, realm: str) -> Unauthenticated:
        address = client_address(request)
        self._suspects.pop(address, None)
        self._suspects[address] = time.monotonic()  # the newest last: the oldest go first when there are many
        if len(self._suspects) > MAX_SUSPECTS:
            del self._suspects[next(iter(self._suspects))]
        await self.limits.hit("failed_auth_per_address", address)
        exc.headers = challenge(realm, None if exc.code == "missing_token" else "invalid_token")
        return exc

    async def _refuse_locked_out(self, request: Request) -> None:
        """429 for an address past its failed authentications, before its credential is even looked at
        (else a right guess would still tell itself apart). Only an address that failed here within the
        limit's window is looked up: the limiter (Redis, shared by replicas) is not asked on every call."""
        address = client_address(request)
        failed_at = self._suspects.get(address)
        if failed_at is None:
            return
        if time.monotonic() - failed_at > self._failure_window_s:
            del self._suspects[address]
            return
        await self.limits.check("failed_auth_per_address", address)

    async def customer(self, request: Request, credentials: Annotated[Bearer, Depends(_customer_bearer)]) -> Customer:
        """The customer calling, proven by its bearer token."""
        assert self._customer_tokens is not None, "this service takes no customer tokens"
        await self._refuse_locked_out(request)
        if credentials is None:
            raise await self._failed(
                request,
                Unauthenticated("missing_token", "this endpoint needs Authorization: Bearer <token>"),
                "bookline",
            )
        try:
            return await self._customer_tokens.verify(credentials.credentials)
        except Unauthenticated as exc:
            raise await self._failed(request, exc, "bookline") from None

    def services(self, *allowed: str) -> Callable[..., Awaitable[str]]:
        """A dependency that admits only the listed services; it returns the caller's name."""
        allowed_set = frozenset(allowed)

        async def caller(request: Request, credentials: Annotated[Bearer, Depends(_service_bearer)]) -> str:
            if self.unsafe_open:  # test-only: the control test of service credentials
                return "anyone"
            await self._refuse_locked_out(request)
            if credentials is None:
                raise await self._failed(
                    request,
                    Unauthenticated("missing_token", f"{self.service} takes calls only with a service credential"),
                    self.service,
                )
            try:
                name = self._service_tokens.verify(credentials.credentials)
            except InvalidServiceToken as exc:
                failure = Unauthenticated("invalid_service_token", str(exc))
                raise await self._failed(request, failure, self.service) from None
            if name not in allowed_set:
                raise Forbidden("service_forbidden", f"{name} may not call this endpoint of {self.service}")
            return name

        return caller
