"""The lean HTTP server tracing (bookline.http_tracing) emits what the contrib FastAPI instrumentation
emits with Bookline's settings: the same requests, over real HTTP, against the same app instrumented
either way, give the same spans (names, kinds, parents, status, attributes, events), the same
sampler input and the same ``http.server.request.duration`` points."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from fastapi.routing import Mount
from opentelemetry import baggage
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor, _get_route_details
from opentelemetry.instrumentation.fastapi import __name__ as contrib_scope
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import StatusCode
from opentelemetry.util.http import sanitize_method
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Route

from bookline import http_tracing
from bookline.services.common.app import TraceResponseMiddleware, install_error_handlers
from bookline.telemetry import _HttpDurationsMeterProvider
from support.serving import served

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"

# (method, path with query, extra headers); the same list against both instrumentations
REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/items/7", {}),
    ("GET", "/items/7?expand=rooms&note=a%20b", {}),
    ("POST", "/holds/r-1/commit", {"traceparent": TRACEPARENT, "baggage": "tenant=acme"}),
    ("GET", "/nowhere", {}),
    ("GET", "/holds/r-1/commit", {}),  # 405: the route matches, the method does not
    ("GET", "/conflict", {}),  # 409 through HTTPException: not an error for a server span
    ("GET", "/boom", {}),  # the handler raises: 500
    ("PURGE", "/items/7", {}),  # a method outside RFC 9110
    ("GET", "/items/not-a-number", {}),  # 422, the route matched
    ("GET", "/items/7/", {}),  # a redirect, no route
    ("GET", "/v1/admin/jobs/5", {}),  # a route included with prefixes
    ("GET", "/items/8", {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"}),
    ("GET", "/stream", {}),  # the app fails after the response started
    ("GET", "/healthz", {}),
    ("GET", "/readyz", {}),
    ("GET", "/readyz?probe=1", {}),
]
EXCLUDED = {"/healthz", "/readyz"}


class RecordingSampler(Sampler):
    """ALWAYS_ON, remembering what it was asked: what the sampler of a service sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any, dict[str, Any]]] = []

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None) -> SamplingResult:  # noqa: ANN001
        self.seen.append((name, kind, dict(attributes or {})))
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return "recording"


class Instrumented:
    """One app, its providers and what they recorded."""

    def __init__(self, lean: bool) -> None:
        self.exporter = InMemorySpanExporter()
        self.sampler = RecordingSampler()
        self.tracer_provider = TracerProvider(sampler=self.sampler)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.app = build_app(self.tracer_provider)
        if lean:
            http_tracing.instrument_app(
                self.app, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
            )
        else:  # as bookline.telemetry.ServiceTelemetry.instrument_app does it
            FastAPIInstrumentor.instrument_app(
                self.app,
                tracer_provider=self.tracer_provider,
                meter_provider=_HttpDurationsMeterProvider(self.meter_provider),
                excluded_urls="healthz,readyz",
                exclude_spans=["receive", "send"],
                http_capture_headers_sanitize_fields=["authorization"],
            )

    def durations(self) -> list[Any]:
        data = self.reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                found.extend(sm.metrics)
        return found

    def duration_count(self) -> int:
        return sum(p.count for m in self.durations() for p in m.data.data_points)


def build_app(tracer_provider: TracerProvider) -> FastAPI:
    """A small app with Bookline's error handlers and traceresponse middleware."""
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})
    install_error_handlers(app)
    app.add_middleware(TraceResponseMiddleware)
    tracer = tracer_provider.get_tracer("bookline")

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        with tracer.start_as_current_span("item.load"):
            return {"id": item_id}

    @app.post("/holds/{reservation_id}/commit")
    async def commit(reservation_id: str) -> dict[str, str]:
        # the baggage of the request is in the context the handler runs in
        with tracer.start_as_current_span("hold.commit", attributes={"tenant": str(baggage.get_baggage("tenant"))}):
            return {"reservation_id": reservation_id}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            raise RuntimeError("broken stream")

        return StreamingResponse(chunks())

    @app.get("/conflict")
    async def conflict() -> None:
        raise HTTPException(409, "already taken")

    @app.get("/boom")
    async def boom() -> None:
        raise ValueError("boom")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    admin = APIRouter(prefix="/admin")

    @admin.get("/jobs/{job_id}")
    async def job(job_id: int) -> dict[str, int]:
        return {"job": job_id}

    app.include_router(admin, prefix="/v1")
    return app


class Switch:
    """One uvicorn server (so one server.address and server.port) serving either app."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await self.app(scope, receive, send)


async def settle(side: Instrumented, expected: int) -> None:
    for _ in range(500):
        if side.duration_count() >= expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{expected} durations expected, {side.duration_count()} recorded")


def normalized(spans: list[Any]) -> list[dict[str, Any]]:
    """What must be identical: everything but ids that differ per run, the per-connection
    client.port, exception stack traces and the instrumentation scope."""
    spans = sorted(spans, key=lambda s: s.start_time)
    position = {s.context.span_id: i for i, s in enumerate(spans)}
    first_trace = spans[0].context.trace_id if spans else None
    out = []
    for s in spans:
        if s.parent is None:
            parent: Any = None
        elif s.parent.is_remote:
            parent = ("remote", f"{s.parent.trace_id:032x}", f"{s.parent.span_id:016x}")
        else:
            parent = position.get(s.parent.span_id, "outside")
        out.append(
            {
                "name": s.name,
                "kind": s.kind,
                "parent": parent,
                "same_trace": s.context.trace_id == first_trace,
                "http": s.instrumentation_scope.name in (contrib_scope, http_tracing.SCOPE_NAME),
                "status": (s.status.status_code, s.status.description),
                "attributes": {k: v for k, v in s.attributes.items() if k != "client.port"},
                "events": [
                    (e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"}) for e in s.events
                ],
            }
        )
    return out


async def run(
    side: Instrumented,
    client: httpx.AsyncClient,
    requests: list[tuple[str, str, dict[str, str]]] = REQUESTS,
) -> list[dict[str, Any]]:
    results = []
    expected = side.duration_count()
    for method, target, headers in requests:
        side.exporter.clear()
        sampled = len(side.sampler.seen)
        try:
            response: httpx.Response | None = await client.request(method, target, headers=headers)
        except (httpx.RemoteProtocolError, RuntimeError):  # /stream: the body breaks off
            response = None
        if target.split("?")[0] in EXCLUDED:
            await asyncio.sleep(0.05)
        else:
            expected += 1
            await settle(side, expected)
        spans = list(side.exporter.get_finished_spans())
        server = [s for s in spans if s.instrumentation_scope.name != "bookline"]
        assert len(server) <= 1, [s.name for s in spans]
        if server:
            assert isinstance(server[0].attributes["client.port"], int)
        if (
            server and response is not None and response.status_code != 500
        ):  # a 500 is answered outside the app's middlewares
            # TraceResponseMiddleware ran inside the server span
            assert response.headers["traceresponse"].split("-")[2] == f"{server[0].context.span_id:016x}"
        results.append(
            {
                "request": (method, target),
                "status": response.status_code if response is not None else None,
                "spans": normalized(spans),
                "sampler": [
                    (name, kind, {k: v for k, v in attrs.items() if k != "client.port"})
                    for name, kind, attrs in side.sampler.seen[sampled:]
                ],
            }
        )
    return results


def duration_points(side: Instrumented) -> tuple[set[tuple[str, str]], Counter, set[tuple[float, ...]]]:
    metrics = side.durations()
    names = {(m.name, m.unit) for m in metrics}
    points: Counter = Counter()
    bounds = set()
    for m in metrics:
        for p in m.data.data_points:
            points[frozenset(p.attributes.items())] += p.count
            bounds.add(tuple(p.explicit_bounds))
    return names, points, bounds


async def test_lean_tracing_emits_what_the_contrib_emits() -> None:
    contrib, lean = Instrumented(lean=False), Instrumented(lean=True)
    switch = Switch()
    async with served(switch) as base, httpx.AsyncClient(base_url=base) as client:
        switch.app = contrib.app
        expected = await run(contrib, client)
        switch.app = lean.app
        got = await run(lean, client)

    for want, have in zip(expected, got, strict=True):
        assert have == want, want["request"]

    # the cases the comparison is meant to cover are really there
    by_request = {r["request"]: r for r in expected}
    server = {k: r["spans"][0] for k, r in by_request.items() if r["spans"]}
    assert server[("GET", "/items/7")]["name"] == "GET /items/{item_id}"
    assert server[("GET", "/items/7")]["kind"].name == "SERVER"
    assert server[("GET", "/items/7?expand=rooms&note=a%20b")]["attributes"]["url.query"] == "expand=rooms&note=a%20b"
    commit = by_request[("POST", "/holds/r-1/commit")]["spans"]
    assert commit[0]["parent"] == ("remote", PARENT_TRACE, PARENT_SPAN)
    assert commit[1]["name"] == "hold.commit" and commit[1]["parent"] == 0
    assert commit[1]["attributes"] == {"tenant": "acme"}
    broken = server[("GET", "/stream")]
    assert broken["status"] == (StatusCode.ERROR, "RuntimeError: broken stream")
    assert [e[1]["exception.type"] for e in broken["events"]] == [
        "RuntimeError"
    ] * 3  # recorder, app handler, then the span itself
    assert server[("GET", "/nowhere")]["name"] == "GET"
    assert "http.route" not in server[("GET", "/nowhere")]["attributes"]
    assert server[("GET", "/holds/r-1/commit")]["attributes"]["http.route"] == "/holds/{reservation_id}/commit"
    assert server[("GET", "/conflict")]["status"][0].name == "UNSET"
    boom = server[("GET", "/boom")]
    assert boom["status"][0].name == "ERROR" and boom["attributes"]["error.type"] == "500"
    assert [e[0] for e in boom["events"]].count("exception") >= 1
    purge = server[("PURGE", "/items/7")]
    assert purge["name"] == "HTTP /items/{item_id}"
    assert purge["attributes"]["http.request.method"] == "_OTHER"
    assert purge["attributes"]["http.request.method_original"] == "PURGE"
    assert server[("GET", "/v1/admin/jobs/5")]["attributes"]["http.route"] == "/v1/admin/jobs/{job_id}"
    assert server[("GET", "/items/8")]["attributes"]["user_agent.synthetic.type"] == "bot"
    for probe in [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/readyz?probe=1")]:
        assert by_request[probe]["spans"] == [] and by_request[probe]["sampler"] == []
    attributes = server[("GET", "/items/7")]["attributes"]
    assert {
        "url.scheme",
        "server.address",
        "server.port",
        "network.protocol.version",
        "url.path",
        "http.request.method",
        "user_agent.original",
        "client.address",
        "http.route",
        "http.response.status_code",
    } <= set(attributes)

    # the duration metric: the only instrument, same unit, buckets and attribute sets
    want_names, want_points, want_bounds = duration_points(contrib)
    have_names, have_points, have_bounds = duration_points(lean)
    assert want_names == {("http.server.request.duration", "s")}
    assert have_names == want_names
    assert have_bounds == want_bounds
    assert have_points == want_points
    assert sum(want_points.values()) == len([r for r in REQUESTS if r[1].split("?")[0] not in EXCLUDED])


async def test_called_in_process_under_a_span_it_is_an_internal_child_as_with_the_contrib() -> None:
    """An app called in-process (httpx.ASGITransport) from traced code: the contrib makes an INTERNAL
    span under the caller's, ignoring the request's traceparent; so does the lean middleware."""
    requests = [("GET", "/items/3", {"traceparent": TRACEPARENT}), ("GET", "/boom", {})]
    results = []
    for side in (Instrumented(lean=False), Instrumented(lean=True)):
        transport = httpx.ASGITransport(app=side.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            with side.tracer_provider.get_tracer("caller").start_as_current_span("caller"):
                results.append(await run(side, client, requests))
    assert results[0] == results[1]
    assert results[0][0]["spans"][0]["kind"].name == "INTERNAL"
    assert results[0][0]["spans"][0]["parent"] == "outside"


@pytest.mark.parametrize("raw", ["GET", "get", "Post", "PURGE", "purge", " GET ", "QUERY", "FOO BAR", "_OTHER", "HTTP"])
def test_method_attributes_are_the_contribs(raw: str) -> None:
    from opentelemetry.instrumentation._semconv import _set_http_method, _StabilityMode

    want: dict[str, str] = {}
    _set_http_method(want, raw, sanitize_method(raw), _StabilityMode.HTTP)
    span_method = sanitize_method(raw.strip())
    method, original, name = http_tracing._Methods(capture_all=False)(raw)
    have = {"http.request.method": method}
    if original is not None:
        have["http.request.method_original"] = original
    assert have == want
    assert name == ("HTTP" if span_method == "_OTHER" else span_method)


def _route_app(with_mount: bool) -> FastAPI:
    app = FastAPI()

    async def endpoint() -> str:
        return "ok"

    app.get("/a/{x}")(endpoint)
    app.post("/a/{x}")(endpoint)
    app.put("/a/fixed")(endpoint)
    app.get("/n/{n:int}")(endpoint)
    app.get("/f/{v:float}")(endpoint)
    app.get("/p/{rest:path}")(endpoint)
    app.api_route("/any/{x}", methods=["GET", "PATCH", "PURGE"])(endpoint)
    app.router.routes.append(Route("/plain/{y}", lambda r: PlainTextResponse("ok")))
    app.router.routes.append(Route("/nomethods", lambda r: PlainTextResponse("ok"), methods=None))
    inner = APIRouter(prefix="/in")
    inner.get("/{z}/leaf")(endpoint)
    inner.delete("/{z}/leaf")(endpoint)
    outer = APIRouter()
    outer.include_router(inner, prefix="/deep")
    app.include_router(outer, prefix="/v2")
    if with_mount:
        app.router.routes.append(Mount("/static", app=PlainTextResponse("static")))
        app.router.routes.append(Host("api.example", app=PlainTextResponse("host")))
    return app


PATHS = [
    "/a/1",
    "/a/fixed",
    "/a/",
    "/n/12",
    "/n/x",
    "/f/1.5",
    "/f/2",
    "/p/a/b/c",
    "/any/1",
    "/plain/2",
    "/nomethods",
    "/v2/deep/in/9/leaf",
    "/v2/deep/in/9/leaf/",
    "/static/x.css",
    "/static",
    "/nowhere",
    "/",
    "/a/1\n",
]


@pytest.mark.parametrize("with_mount", [False, True])
def test_route_lookup_is_the_contribs(with_mount: bool) -> None:
    app = _route_app(with_mount)
    table = http_tracing._RouteTable(app)
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "PURGE", "OPTIONS"]:
        for path in PATHS:
            scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "app": app}
            assert table(scope) == _get_route_details(scope), (method, path)
    assert (table.state[0] is not None) == with_mount


def test_route_lookup_follows_routes_added_later() -> None:
    app = FastAPI()
    table = http_tracing._RouteTable(app)
    scope = {"type": "http", "method": "GET", "path": "/late/1", "root_path": "", "headers": [], "app": app}
    assert table(scope) is None

    @app.get("/late/{n}")
    async def late(n: int) -> int:
        return n

    assert table(scope) == "/late/{n}"


def test_instrumenting_twice_traces_once() -> None:
    side = Instrumented(lean=True)
    http_tracing.instrument_app(side.app, tracer_provider=side.tracer_provider, meter_provider=side.meter_provider)
    stack = side.app.build_middleware_stack()
    assert isinstance(stack, http_tracing.HttpServerTracing)
    assert not isinstance(stack.app, http_tracing.HttpServerTracing)
