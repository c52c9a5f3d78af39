"""The CPU one traced HTTP request costs a service: no tracing, the contrib FastAPI instrumentation
(as Bookline configures it) and the lean middleware of ``bookline.http_tracing``.

The ASGI app is called in-process, many times, with no network and no server: what is left is the
app (a trivial route behind Bookline's error handlers and ``traceresponse`` middleware, among
``--routes`` other templated routes as a service has) and the instrumentation. Spans go to a
discarding exporter through a ``SimpleSpanProcessor``, so export batching is not measured either.

    python bench/http_server_tracing.py [--requests 20000] [--rounds 5] [--routes 20] [--path /ping]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from bookline import http_tracing
from bookline.services.common.app import TraceResponseMiddleware, install_error_handlers

# importing bookline.telemetry sets OTEL_SEMCONV_STABILITY_OPT_IN=http before the contrib is set up
from bookline.telemetry import _HttpDurationsMeterProvider


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def build(variant: str, routes: int) -> FastAPI:
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})
    install_error_handlers(app)
    app.add_middleware(TraceResponseMiddleware)
    for i in range(routes):

        async def other(item_id: str) -> dict[str, str]:
            return {"id": item_id}

        app.get(f"/other{i}/{{item_id}}")(other)

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Discard()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    if variant == "contrib":
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracer_provider,
            meter_provider=_HttpDurationsMeterProvider(meter_provider),
            excluded_urls="healthz,readyz",
            exclude_spans=["receive", "send"],
            http_capture_headers_sanitize_fields=["authorization"],
        )
    elif variant == "lean":
        http_tracing.instrument_app(app, tracer_provider=tracer_provider, meter_provider=meter_provider)
    return app


def scope_of(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8001),
        "client": ("127.0.0.1", 51234),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8001"),
            (b"user-agent", b"Python/3.11 aiohttp/3.10"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            (b"authorization", b"Bearer x"),
        ],
    }


async def per_request_us(app: FastAPI, path: str, requests: int, rounds: int) -> float:
    base = scope_of(path)
    body = {"type": "http.request", "body": b"", "more_body": False}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return body

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(2000):  # warm up: middleware stack, route tables, caches
        await app(dict(base), receive, send)
    assert set(statuses) == {200}, set(statuses)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(requests):
            await app(dict(base), receive, send)
        best = min(best, (time.perf_counter() - start) / requests * 1e6)
    return best


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--routes", type=int, default=20, help="other templated routes before the measured one")
    parser.add_argument("--path", default="/ping")
    args = parser.parse_args()
    results = {}
    for variant in ("none", "contrib", "lean"):
        app = build(variant, args.routes)
        results[variant] = await per_request_us(app, args.path, args.requests, args.rounds)
    print(f"GET {args.path}, {args.routes + 2} routes, best of {args.rounds} x {args.requests} in-process requests")
    for variant, us in results.items():
        extra = "" if variant == "none" else f"   (+{us - results['none']:.1f} µs for tracing)"
        print(f"  {variant:8s} {us:7.1f} µs/request{extra}")
    contrib, lean = results["contrib"] - results["none"], results["lean"] - results["none"]
    print(f"  lean tracing costs {lean / contrib:.0%} of the contrib's ({contrib - lean:.1f} µs less per request)")


if __name__ == "__main__":
    asyncio.run(main())
