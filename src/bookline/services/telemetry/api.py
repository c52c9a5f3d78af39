"""The telemetry store's HTTP app (``bookline serve telemetry``, :4318): the OTLP/HTTP receiver
(``/v1/traces``, ``/v1/metrics``, ``/v1/logs``), the read API under ``/api`` and the viewer page.

Bad input answers 4xx: an export with the ``google.rpc.Status`` the OTLP specification asks for,
the read API with Bookline's error envelope (``invalid_filter`` for a query parameter it cannot use).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import FastAPI, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from bookline.config import Settings
from bookline.services.common.app import create_service_app, documented, error_response
from bookline.services.telemetry import metric_queries, queries, viewer
from bookline.services.telemetry.access import SESSION_COOKIE, SESSION_S, IngestRefused, StoreAccess, resources_of
from bookline.services.telemetry.admin import add_admin_routes
from bookline.services.telemetry.filters import InvalidFilterError, TraceQuery, hex_id, parse_int, parse_time_ns
from bookline.services.telemetry.otlp import (
    JSON,
    MAX_BODY_BYTES,
    OtlpError,
    export_response,
    failure_body,
    media_type,
)
from bookline.services.telemetry.store import TelemetryStore
from bookline.telemetry import ServiceTelemetry, current_trace_id

log = logging.getLogger("bookline.telemetry.api")

HOUR_NS = 3_600_000_000_000

_NOUNS = {"traces": "spans", "metrics": "data points", "logs": "log records"}


def build_app(settings: Settings, telemetry: ServiceTelemetry, *, store: TelemetryStore | None = None) -> FastAPI:
    """The store's app; ``store`` (tests) replaces the one built from the settings."""
    store = store or TelemetryStore.from_settings(settings)
    app = create_service_app(
        title="Bookline telemetry store",
        telemetry=telemetry,
        db=None,
        # exports over MAX_BODY_BYTES get the OTLP answer from the route; this limit is only a backstop
        max_body_bytes=2 * MAX_BODY_BYTES,
        body_timeout_s=settings.request_body_timeout_s,
        on_startup=[store.start],
        on_shutdown=[store.stop],
    )
    app.state.store = store
    access = StoreAccess(settings)
    _add_otlp_routes(app, store, access)
    _guard_reads(app, access)
    _add_read_routes(app, store)
    add_admin_routes(app, settings, store)
    viewer.add_viewer_routes(app)
    return app


# ---- OTLP/HTTP receiver ---------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise OtlpError(413, "body_too_large", f"the body exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise OtlpError(413, "body_too_large", f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _failure(exc: OtlpError, encoding: str) -> Response:
    body = failure_body(exc.status, exc.code, exc.message, encoding, current_trace_id())
    return Response(body, status_code=exc.status, media_type=encoding)


def _add_otlp_routes(app: FastAPI, store: TelemetryStore, access: StoreAccess) -> None:
    writers = {"traces": store.write_spans, "metrics": store.write_metrics, "logs": store.write_logs}

    async def export(request: Request, signal: str) -> Response:
        try:
            encoding = media_type(request.headers.get("content-type"))
        except OtlpError as exc:
            return _failure(exc, JSON)
        try:
            sender = access.sender(request.headers.get("authorization"))
        except IngestRefused as refused:
            response = _failure(OtlpError(refused.status, refused.code, refused.message), encoding)
            response.headers["WWW-Authenticate"] = 'Bearer realm="bookline-telemetry"'
            return response
        try:
            body = await _read_body(request, MAX_BODY_BYTES)
            decoded = await store.decoder.decode(signal, body, request.headers.get("content-encoding"), encoding)
            access.check_resources(sender, resources_of(decoded))
        except OtlpError as exc:
            return _failure(exc, encoding)
        except IngestRefused as refused:
            return _failure(OtlpError(refused.status, refused.code, refused.message), encoding)
        try:
            await writers[signal](decoded)
        except Exception:
            log.exception("storing an export of %s failed", signal)
            # 503 is retryable for an OTLP exporter: the data is not lost if the store recovers
            return _failure(OtlpError(503, "store_unavailable", "the store could not write the data"), encoding)
        rejected = decoded.rejected
        body = export_response(signal, rejected.count, rejected.message(_NOUNS[signal]), encoding)
        return Response(body, media_type=encoding)

    def route_for(signal: str) -> Callable[[Request], Awaitable[Response]]:
        # a closure, not a default argument: FastAPI would read a parameter from the query string
        async def route(request: Request) -> Response:
            return await export(request, signal)

        return route

    for signal in ("traces", "metrics", "logs"):
        app.add_api_route(f"/v1/{signal}", route_for(signal), methods=["POST"], include_in_schema=False)


# ---- who may read ---------------------------------------------------------------------------------

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Bookline traces: sign in</title></head>
<body><h1>Bookline telemetry store</h1>
<p>This store is reachable from the network: sign in with the admin token
(<code>DATA_DIR/admin.token</code> or <code>BOOKLINE_ADMIN_TOKEN</code>).</p>
<form method="post" action="/login"><label>Admin token <input type="password" name="token" required
autocomplete="off"></label> <button type="submit">Sign in</button></form>{error}</body></html>
"""
# what is always open: the receiver (it checks its own credentials), health, the admin reads (they
# check the admin token) and the sign-in page
_UNGUARDED = ("/v1/", "/healthz", "/readyz", "/admin/", "/login")


def _guard_reads(app: FastAPI, access: StoreAccess) -> None:
    @app.get("/login", include_in_schema=False)
    async def login_page() -> HTMLResponse:
        return HTMLResponse(_LOGIN_PAGE.format(error=""))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        session = access.login((form.get("token") or [""])[0].strip())
        if session is None:
            return HTMLResponse(_LOGIN_PAGE.format(error="<p>" + escape("That is not the admin token.") + "</p>"), 401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_S, httponly=True, samesite="strict")
        return response

    if access.reads_open:
        return

    @app.middleware("http")
    async def reads_need_the_admin_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path.startswith(_UNGUARDED) or access.may_read(
            request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)
        ):
            return await call_next(request)
        if path.startswith("/api/"):
            response = error_response(401, "viewer_unauthorized", "reading the store needs the admin token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="bookline-telemetry"'
            return response
        return RedirectResponse("/login", status_code=303)


# ---- read API -------------------------------------------------------------------------------------


_TRACE_ID = "^[0-9a-fA-F]{32}$"


def _invalid(exc: InvalidFilterError) -> JSONResponse:
    return error_response(400, "invalid_filter", str(exc))


def _add_read_routes(app: FastAPI, store: TelemetryStore) -> None:
    @app.get("/api/services")
    async def list_services() -> JSONResponse:
        return JSONResponse(await store.read(queries.services))

    @app.get("/api/traces")
    async def search_traces(request: Request) -> JSONResponse:
        try:
            query = TraceQuery.from_params(request.query_params, request.query_params.multi_items())
        except InvalidFilterError as exc:
            return _invalid(exc)
        return JSONResponse(await store.read(queries.search_traces, query))

    # the pattern is documented, not enforced by FastAPI: the route answers 400 invalid_trace_id itself
    @app.get("/api/traces/{trace_id}", responses=documented(404))
    async def get_trace(
        trace_id: Annotated[str, Path(description="32 hexadecimal digits", json_schema_extra={"pattern": _TRACE_ID})],
    ) -> JSONResponse:
        try:
            wanted = hex_id({"trace_id": trace_id}, "trace_id", 32)
        except InvalidFilterError:
            return error_response(400, "invalid_trace_id", "a trace id is 32 hexadecimal characters")
        found = await store.read(queries.get_trace, wanted)
        if found is None:
            return error_response(404, "trace_not_found", f"no trace {wanted} in the store", trace=wanted)
        return JSONResponse(found)

    @app.get("/api/logs")
    async def list_logs(request: Request) -> JSONResponse:
        params = request.query_params
        try:
            found = await store.read(
                queries.logs,
                trace_id=hex_id(params, "trace_id", 32),
                span_id=hex_id(params, "span_id", 16),
                service=params.get("service") or None,
                since_ns=parse_time_ns(params, "since"),
                limit=parse_int(params, "limit", 200, low=1, high=5000),
            )
        except InvalidFilterError as exc:
            return _invalid(exc)
        return JSONResponse(found)

    @app.get("/api/dependencies")
    async def dependency_map(request: Request) -> JSONResponse:
        try:
            since = parse_time_ns(request.query_params, "since")
        except InvalidFilterError as exc:
            return _invalid(exc)
        return JSONResponse(await store.read(queries.dependencies, since))

    @app.get("/api/metrics")
    async def list_metrics() -> JSONResponse:
        return JSONResponse(await store.read(metric_queries.metric_list))

    @app.get("/api/metrics/{name}", responses=documented(404))
    async def one_metric(name: str, request: Request) -> JSONResponse:
        try:
            since = parse_time_ns(request.query_params, "since")
        except InvalidFilterError as exc:
            return _invalid(exc)
        since = since if since is not None else store.wall_ns() - HOUR_NS
        found = await store.read(metric_queries.metric_series, name, request.query_params.get("service") or None, since)
        if found is None:
            return error_response(404, "metric_not_found", f"no metric {name!r} in the store")
        return JSONResponse(found)

    @app.get("/api/dashboard")
    async def dashboard(request: Request) -> JSONResponse:
        try:
            minutes = parse_int(request.query_params, "minutes", 60, low=1, high=24 * 60)
        except InvalidFilterError as exc:
            return _invalid(exc)
        return JSONResponse(await store.read(metric_queries.dashboard, minutes, store.wall_ns()))

    @app.get("/api/sampling")
    async def sampling() -> JSONResponse:
        return JSONResponse(store.sampling_status())
