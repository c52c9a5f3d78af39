"""The CPU one traced outgoing HTTP call costs a service: no tracing, the contrib aiohttp client
instrumentation (``create_trace_config`` as Bookline configures it) and the lean trace config of
``bookline.http_client_tracing``.

A tiny aiohttp server runs in a process of its own; this process makes sequential ``POST``
requests (a small JSON body, a small JSON answer, under a parent span as in a service handler) through
one aiohttp session per variant, and prints this process's CPU time per request (what the client
pays; the server's CPU is not counted) and the wall time. Spans go to a discarding exporter through a
``SimpleSpanProcessor``, so export batching is not measured either. Rounds alternate between the
variants; the best round of each is kept.

    python bench/http_client_tracing.py [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from bookline import http_client_tracing

# importing bookline.telemetry sets OTEL_SEMCONV_STABILITY_OPT_IN=http before the contrib is set up
from bookline.telemetry import _HttpDurationsMeterProvider

SERVER = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def quote(request):
        body = await request.json()
        return web.json_response({"ok": True, "nights": body.get("nights")})

    app = web.Application()
    app.router.add_post("/quote/{room}", quote)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def variant(name: str) -> tuple[list[aiohttp.TraceConfig], Any]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Discard()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracer = tracer_provider.get_tracer("bench")
    if name == "none":
        return [], tracer
    if name == "contrib":  # as bookline.telemetry.ServiceTelemetry.http_client_trace_config
        config = create_trace_config(
            tracer_provider=tracer_provider,
            meter_provider=_HttpDurationsMeterProvider(meter_provider),
            sem_conv_opt_in_mode=_StabilityMode.HTTP,
        )
    else:
        config = http_client_tracing.trace_config(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return [config], tracer


async def one_round(session: aiohttp.ClientSession, tracer: Any, base: str, requests: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    with tracer.start_as_current_span("handler"):
        for i in range(requests):
            async with session.post(f"{base}/quote/{i % 50}", json={"nights": 3}) as response:
                await response.read()
                assert response.status == 200
    return (time.process_time() - cpu) / requests * 1e6, (time.perf_counter() - wall) / requests * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        names = ("none", "contrib", "lean")
        sessions = {}
        for name in names:
            configs, tracer = variant(name)
            sessions[name] = (aiohttp.ClientSession(trace_configs=configs), tracer)
        best = {name: (float("inf"), float("inf")) for name in names}
        for name in names:  # warm up: connections, caches
            await one_round(*sessions[name], base, 300)
        for _ in range(args.rounds):
            for name in names:
                session, tracer = sessions[name]
                cpu, wall = await one_round(session, tracer, base, args.requests)
                best[name] = (min(best[name][0], cpu), min(best[name][1], wall))
        for session, _ in sessions.values():
            await session.close()
    finally:
        server.terminate()
        server.wait()
    print(f"POST /quote/{{room}} (JSON both ways), best of {args.rounds} x {args.requests} sequential requests")
    none_cpu = best["none"][0]
    for name in names:
        cpu, wall = best[name]
        extra = "" if name == "none" else f"   (+{cpu - none_cpu:.1f} µs CPU for tracing)"
        print(f"  {name:8s} {cpu:7.1f} µs CPU/request  {wall:7.1f} µs wall/request{extra}")
    contrib, lean = best["contrib"][0] - none_cpu, best["lean"][0] - none_cpu
    print(f"  lean tracing costs {lean / contrib:.0%} of the contrib's ({contrib - lean:.1f} µs CPU less per request)")


if __name__ == "__main__":
    asyncio.run(main())
