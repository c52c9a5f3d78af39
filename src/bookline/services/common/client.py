"""The HTTP client every service uses to call another (aiohttp: several times cheaper per request
than httpx here, which matters on a path of seven calls per booking): traced, with W3C context
propagated by the aiohttp instrumentation, with a timeout on every call, a bounded retry for idempotent calls, and remote
errors turned back into the domain errors they stand for."""

from __future__ import annotations

import asyncio
import json as json_module
from typing import Any

import aiohttp

from bookline.auth.services import ServiceCredentials
from bookline.domain import errors
from bookline.domain.errors import (
    BooklineError,
    Conflict,
    DependencyFailed,
    DependencyTimeout,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    PaymentDeclined,
)
from bookline.telemetry import ServiceTelemetry

_BY_CODE: dict[str, type[BooklineError]] = {
    cls.code: cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, BooklineError)
}
# a code without a class of its own still keeps the kind of error its status says
_BY_STATUS: dict[int, type[BooklineError]] = {
    402: PaymentDeclined,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
}


def remote_error(status: int, body: Any, service: str) -> BooklineError:
    """The domain error a service answered with (4xx), or a dependency failure (5xx)."""
    err = body.get("error") if isinstance(body, dict) else None
    if status >= 500 or not isinstance(err, dict):
        return DependencyFailed("dependency_failed", f"{service} answered {status}", dependency=service)
    details = {k: v for k, v in err.items() if k not in ("code", "message")}
    cls = _BY_CODE.get(err.get("code", "")) or _BY_STATUS.get(status, BooklineError)
    exc = cls(err.get("code"), err.get("message", ""), **details)
    exc.status = status
    return exc


class ServiceClient:
    """A base for typed clients of one service."""

    service = "service"

    def __init__(
        self,
        base_url: str,
        telemetry: ServiceTelemetry,
        *,
        timeout: float,
        credentials: ServiceCredentials | None = None,
    ) -> None:
        """``credentials``: the calling service's, presented on every call (None: an anonymous caller,
        such as a client tokenizing a card at the gateway)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._telemetry = telemetry
        self._credentials = credentials
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # created on first use, inside the event loop that will use it
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # idle connections close before the server (uvicorn: 5 s) can close them under us
                connector=aiohttp.TCPConnector(limit=200, limit_per_host=200, keepalive_timeout=2.0),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                trace_configs=[self._telemetry.http_client_trace_config()],
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        retries: int = 0,
    ) -> Any:
        """Send a request and return the decoded JSON body of a 2xx answer.

        ``retries`` > 0 only for calls that are safe to repeat (reads, or writes with an
        idempotency key); connection failures and 502/503 are retried with a short backoff.
        """
        url = self.base_url + path
        query = {k: str(v) for k, v in params.items()} if params else None
        if self._credentials is not None:
            headers = {**(headers or {}), **self._credentials.headers_for(self.service)}
        per_call = aiohttp.ClientTimeout(total=timeout) if timeout is not None else None
        attempt = 0
        while True:
            try:
                async with self.session.request(
                    method, url, json=json, params=query, headers=headers, timeout=per_call
                ) as response:
                    status, content = response.status, await response.read()
            except TimeoutError as exc:
                raise DependencyTimeout(
                    "dependency_timeout", f"{self.service} did not answer in time", dependency=self.service
                ) from exc
            except aiohttp.ClientError as exc:
                if attempt < retries:
                    attempt += 1
                    await asyncio.sleep(0.05 * attempt)
                    continue
                raise DependencyUnavailable(
                    "dependency_unavailable", f"{self.service} cannot be reached", dependency=self.service
                ) from exc
            if status in (502, 503) and attempt < retries:
                attempt += 1
                await asyncio.sleep(0.05 * attempt)
                continue
            try:
                body = json_module.loads(content) if content else None
            except ValueError:
                body = None
            if 200 <= status < 300:
                return body
            raise remote_error(status, body, self.service)
