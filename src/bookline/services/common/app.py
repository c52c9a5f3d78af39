"""What every Bookline service app shares: health and readiness, the error envelope, the body size
limit, the ``traceresponse`` header and OpenTelemetry instrumentation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookline.adapters.db import Database
from bookline.adapters.migrations import upgrade
from bookline.config import Settings
from bookline.domain.errors import BooklineError
from bookline.redaction import scrub
from bookline.telemetry import ServiceTelemetry, current_trace_id

log = logging.getLogger("bookline.http")
# request headers a service reads at most (a bearer token and the trace context fit many times over)
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100

Hook = Callable[[], Awaitable[None]]


def error_response(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    # an error may echo what the caller sent (an id, a path): never a card number or an e-mail
    details = {k: scrub(v) if isinstance(v, str) else v for k, v in details.items()}
    return JSONResponse(
        {"error": {"code": code, "message": scrub(message), **details}, "trace_id": current_trace_id()},
        status_code=status,
    )


# a keyed route requires its Idempotency-Key (its OpenAPI says so); none, or an empty one, is still
# answered 400 missing_idempotency_key, as before it was declared
_NO_IDEMPOTENCY_KEY = {("missing", ("header", "idempotency-key")), ("string_too_short", ("header", "idempotency-key"))}


def _only_the_idempotency_key_missing(errors: Sequence[Any]) -> bool:
    found = [(e.get("type"), tuple(str(p).lower() for p in e.get("loc", ()))) for e in errors]
    return len(found) == 1 and found[0] in _NO_IDEMPOTENCY_KEY


def _validation_message(exc: RequestValidationError) -> str:
    # only where and what, never the offending input (it could be a card number)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _allowed_methods(request: Request) -> str:
    """The methods of every route of the request's path (Starlette's own 405 names only the first
    route's, and GET and POST /bookings are two routes)."""
    matching = [
        r
        for r in request.app.router.routes
        # a route left out of the API document only stands guard (it answers 405 itself)
        if getattr(r, "include_in_schema", True) and r.matches(request.scope)[0] is not Match.NONE
    ]
    # a literal segment names its own resource: /bookings/lookup is not a booking id for GET /bookings/{id}
    most_literal = max((_literal_segments(r) for r in matching), default=0)
    methods: set[str] = set()
    for route in matching:
        if _literal_segments(route) == most_literal:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _literal_segments(route: Any) -> int:
    path = getattr(route, "path", "")
    return sum(1 for segment in path.split("/") if segment and not segment.startswith("{"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BooklineError)
    async def domain_error(_request: Request, exc: BooklineError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message, **exc.details)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "the request body is not valid JSON")
        if _only_the_idempotency_key_missing(errors):
            return error_response(400, "missing_idempotency_key", "the Idempotency-Key header is required")
        return error_response(422, "validation_error", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body at all (not JSON, not UTF-8 ...)
            return error_response(400, "malformed_json", "the request body is not valid JSON")
        codes = {404: "not_found", 405: "method_not_allowed", 408: "body_timeout", 413: "body_too_large"}
        response = error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))
        if exc.headers:  # what the exception carries (Starlette's 405 its Allow)
            response.headers.update(exc.headers)
        if exc.status_code == 405 and (allowed := _allowed_methods(request)):
            response.headers["Allow"] = allowed  # RFC 9110: every method the path takes
        return response

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        trace.get_current_span().record_exception(exc)
        log.exception("unhandled error")
        return error_response(500, "internal_error", "an internal error occurred")


class BodyLimitMiddleware:
    """Answers 413 ``body_too_large`` before the app reads a body over the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, f"the body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "body_too_large", f"the body exceeds {self.max_bytes} bytes")
        await response(scope, receive, send)


class RequestBoundsMiddleware:
    """Bounds what a client can make a service wait for or hold: headers over ``max_header_bytes`` (or
    more than ``max_headers`` of them) answer 431 ``headers_too_large``; a body that does not arrive
    within ``body_timeout_s`` answers 408 ``body_timeout`` and frees the connection."""

    def __init__(self, app: ASGIApp, *, body_timeout_s: float, max_header_bytes: int, max_headers: int) -> None:
        self.app = app
        self.body_timeout_s = body_timeout_s
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        if len(headers) > self.max_headers or sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            response = error_response(
                431, "headers_too_large", f"the request headers exceed {self.max_header_bytes} bytes"
            )
            await response(scope, receive, send)
            return
        body_complete = False

        async def receive_in_time() -> Message:
            nonlocal body_complete
            if body_complete:  # after the body only a disconnect can come: no deadline on that
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    message = await receive()
            except TimeoutError:
                raise StarletteHTTPException(408, f"the body did not arrive within {self.body_timeout_s:g} s") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        await self.app(scope, receive_in_time, send)


class TraceResponseMiddleware:
    """Adds the W3C ``traceresponse`` header naming the server span that handled the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx = trace.get_current_span().get_span_context()
                if ctx.is_valid:
                    value = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"traceresponse", value.encode())]
            await send(message)

        await self.app(scope, receive, send_with_header)


def service_database(settings: Settings, service: str) -> Database:
    """The service's own database: its SQLite file, or its schema on PostgreSQL."""
    return Database(
        settings.database_url_of(service),
        schema=settings.schema_of(service),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )


def create_service_app(
    *,
    title: str,
    telemetry: ServiceTelemetry,
    db: Database | None,
    max_body_bytes: int,
    migrations: str | None = None,
    body_timeout_s: float = Settings.model_fields["request_body_timeout_s"].default,
    on_startup: list[Hook] | None = None,
    on_shutdown: list[Hook] | None = None,
) -> FastAPI:
    """A FastAPI app with Bookline's shared behaviour; the service adds its routes to it.

    At start the service's database is migrated (``migrations``: its Alembic folder) and traced,
    then ``on_startup`` runs; at stop ``on_shutdown`` runs, then the database is closed.
    """
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if db is not None:
            if migrations is not None:
                await upgrade(db, migrations)
            telemetry.instrument_database(db)
        for hook in on_startup or []:
            await hook()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            for hook in on_shutdown or []:
                await hook()
            if db is not None:
                await db.dispose()

    # FastAPI's own telemetry would trace each request a second time beside the instrumentation
    app = FastAPI(
        title=title,
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        responses=COMMON_ERRORS,
    )
    install_error_handlers(app)
    app.add_middleware(TraceResponseMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    app.add_middleware(
        RequestBoundsMiddleware,
        body_timeout_s=body_timeout_s,
        max_header_bytes=MAX_HEADER_BYTES,
        max_headers=MAX_HEADERS,
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": telemetry.service_name}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        if not state["ready"]:
            return error_response(503, "not_ready", "the service is starting or stopping")
        if db is not None:
            try:
                await db.ping()
            except Exception:  # noqa: BLE001 - any database failure means not ready
                return error_response(503, "database_unavailable", "the database does not answer")
        return JSONResponse({"status": "ready", "service": telemetry.service_name})

    telemetry.instrument_app(app)
    return app


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable and machine-readable")
    message: str


class ErrorBody(BaseModel):
    """Every error of every service."""

    error: ErrorDetail
    trace_id: str | None


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, with the error envelope as their schema."""
    return {status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]} for status in statuses}


ERROR_MEANINGS = {
    400: "malformed_json, or a request the service cannot read",
    401: "missing_token, invalid_token or token_expired (WWW-Authenticate: Bearer)",
    402: "payment_declined, with decline_reason",
    403: "the credential is valid but may not do this",
    404: "not found (or not the caller's)",
    408: "the request body did not arrive in time",
    409: "conflict with the current state",
    413: "body_too_large",
    422: "the request is not valid",
    429: "rate_limited (Retry-After)",
    431: "request headers too large",
    502: "a dependency failed",
    503: "a dependency cannot be reached",
    504: "a dependency did not answer in time",
}
# what any route of any service may answer, whatever it does
COMMON_ERRORS = documented(400, 408, 413, 422, 431)
