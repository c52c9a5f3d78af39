"""The telemetry store as a real HTTP server: the OpenTelemetry SDK's own OTLP/HTTP exporters send
it spans, logs and metrics, and the read API gives them back; raw requests check the OTLP/HTTP
answers (JSON, gzip, partial success, 400, 413, 415), tail sampling and the viewer's routes."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from bookline.config import Settings
from bookline.services.telemetry.api import build_app
from bookline.services.telemetry.otlp import MAX_BODY_BYTES
from bookline.telemetry import setup_telemetry
from support.otlp import INGEST, INGEST_TOKEN
from support.serving import served

# errors are kept, everything else dropped, after a short wait (a test cannot wait 10 s per trace)
POLICY = """\
decision_wait: 1s
num_traces: 1000
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"""


@pytest.fixture
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = Settings(data_dir=tmp_path, sampling_policy_file=policy, telemetry_ingest_token=INGEST_TOKEN)
    async with served(build_app(settings, setup_telemetry("telemetry", settings))) as url:
        yield url


def providers(url: str, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=INGEST)))
    return provider


def book(url: str, *, declined: bool) -> str:
    """One booking-shaped trace over three services, exported span by span by the SDK; its trace id."""
    booking = providers(url, "booking-service").get_tracer("bookline")
    gateway = providers(url, "payment-gateway").get_tracer("bookline")
    notification = providers(url, "notification-service").get_tracer("bookline")
    with booking.start_as_current_span("POST /bookings", kind=SpanKind.SERVER) as server:
        with booking.start_as_current_span("booking.create") as create:
            create.set_attribute("booking.outcome", "declined" if declined else "confirmed")
            with booking.start_as_current_span("booking.process_payment", kind=SpanKind.CLIENT) as payment:
                with gateway.start_as_current_span("POST /v1/authorizations", kind=SpanKind.SERVER):
                    pass
                payment.add_event(
                    "payment_declined" if declined else "payment_authorized",
                    {"payment.decline_reason": "card_declined"} if declined else {},
                )
            if declined:
                create.set_status(Status(StatusCode.ERROR, "Payment declined"))
            else:
                with booking.start_as_current_span("booking.confirmed publish", kind=SpanKind.PRODUCER):
                    with notification.start_as_current_span("booking.confirmed process", kind=SpanKind.CONSUMER):
                        pass
        return format(server.get_span_context().trace_id, "032x")


async def get(url: str, path: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        return await http.get(path, params=params)


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.1)


async def test_spans_exported_by_the_sdk_come_back_as_one_trace_with_correct_parents(store_url: str):
    trace_id = await asyncio.to_thread(book, store_url, declined=False)

    found = (await get(store_url, "/api/traces")).json()["traces"]
    assert [t["trace_id"] for t in found] == [trace_id]
    summary = found[0]
    assert (summary["root_name"], summary["span_count"], summary["booking_outcome"], summary["sampling"]) == (
        "POST /bookings",
        6,
        "confirmed",
        "pending",
    )
    assert summary["services"] == ["booking-service", "notification-service", "payment-gateway"]

    spans = (await get(store_url, f"/api/traces/{trace_id}")).json()["spans"]
    by_name = {s["name"]: s for s in spans}
    assert by_name["POST /bookings"]["parent_span_id"] is None
    assert by_name["booking.create"]["parent_span_id"] == by_name["POST /bookings"]["span_id"]
    gateway = by_name["POST /v1/authorizations"]
    assert (gateway["service"], gateway["kind"]) == ("payment-gateway", "SERVER")
    assert gateway["parent_span_id"] == by_name["booking.process_payment"]["span_id"]
    consumer = by_name["booking.confirmed process"]
    assert (consumer["kind"], consumer["parent_span_id"]) == (
        "CONSUMER",
        by_name["booking.confirmed publish"]["span_id"],
    )
    assert [e["name"] for e in by_name["booking.process_payment"]["events"]] == ["payment_authorized"]
    assert [s["start_unix_nano"] for s in spans] == sorted(s["start_unix_nano"] for s in spans)

    edges = (await get(store_url, "/api/dependencies")).json()["edges"]
    assert {(e["caller"], e["callee"]) for e in edges} == {
        ("booking-service", "payment-gateway"),
        ("booking-service", "notification-service"),
    }
    services = (await get(store_url, "/api/services")).json()["services"]
    assert {s["name"]: s["span_count"] for s in services} == {
        "booking-service": 4,
        "payment-gateway": 1,
        "notification-service": 1,
    }


async def test_tail_sampling_keeps_the_failed_trace_and_deletes_the_confirmed_one(store_url: str):
    confirmed = await asyncio.to_thread(book, store_url, declined=False)
    declined = await asyncio.to_thread(book, store_url, declined=True)
    assert (await get(store_url, f"/api/traces/{confirmed}")).status_code == 200  # visible while pending

    async def decided() -> bool:
        return (await get(store_url, "/api/sampling")).json()["pending"] == 0

    assert await eventually(decided)
    kept = (await get(store_url, f"/api/traces/{declined}")).json()
    assert kept["sampling"] == "kept"
    gone = await get(store_url, f"/api/traces/{confirmed}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "trace_not_found"
    sampling = (await get(store_url, "/api/sampling")).json()
    assert (sampling["kept"], sampling["dropped"], sampling["decision_wait_s"], sampling["policies"]) == (
        1,
        1,
        1.0,
        ["errors"],
    )
    assert [t["trace_id"] for t in (await get(store_url, "/api/traces")).json()["traces"]] == [declined]


@pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")
async def test_logs_exported_by_the_sdk_are_found_by_their_trace(store_url: str):
    def log_in_a_span() -> str:
        logger_provider = LoggerProvider(resource=Resource.create({"service.name": "booking-service"}))
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{store_url}/v1/logs", headers=INGEST))
        )
        logger = logging.getLogger("bookline.test.store")
        logger.propagate = False
        handler = LoggingHandler(logger_provider=logger_provider)
        logger.addHandler(handler)
        tracer = TracerProvider().get_tracer("t")
        try:
            with tracer.start_as_current_span("booking.create") as span:
                logger.warning("booking bk_42 declined")
                return format(span.get_span_context().trace_id, "032x")
        finally:
            logger.removeHandler(handler)
            logger_provider.shutdown()

    trace_id = await asyncio.to_thread(log_in_a_span)
    logs = (await get(store_url, "/api/logs", trace_id=trace_id)).json()["logs"]
    assert [(entry["body"], entry["severity_text"], entry["service"]) for entry in logs] == [
        ("booking bk_42 declined", "WARN", "booking-service")
    ]
    assert logs[0]["span_id"] is not None
    bad = await get(store_url, "/api/logs", trace_id="xyz")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_filter")


async def test_metrics_exported_by_the_sdk_feed_the_metric_api_and_the_dashboard(store_url: str):
    def export_metrics() -> None:
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{store_url}/v1/metrics", headers=INGEST), export_interval_millis=60_000
        )
        provider = MeterProvider(resource=Resource.create({"service.name": "booking-service"}), metric_readers=[reader])
        meter = provider.get_meter("bookline")
        attempts = meter.create_counter("booking.attempts")
        duration = meter.create_histogram("booking.duration_ms", unit="ms")
        attempts.add(3, {"booking.status": "success", "booking.source": "web"})
        attempts.add(1, {"booking.status": "failed", "booking.source": "mobile"})
        for ms in (120, 180, 900):
            duration.record(ms, {"booking.status": "success"})
        provider.force_flush()
        provider.shutdown()

    await asyncio.to_thread(export_metrics)
    names = {m["name"] for m in (await get(store_url, "/api/metrics")).json()["metrics"]}
    assert {"booking.attempts", "booking.duration_ms"} <= names
    series = (await get(store_url, "/api/metrics/booking.attempts")).json()
    assert series["type"] == "sum"
    assert sorted(s["points"][-1]["value"] for s in series["series"]) == [1.0, 3.0]

    board = (await get(store_url, "/api/dashboard", minutes=5)).json()
    assert len(board["minutes"]) == 5
    totals = {(b["status"], b["source"]): sum(b["counts"]) for b in board["bookings_per_minute"]}
    assert totals == {("success", "web"): 3, ("failed", "mobile"): 1}
    assert board["duration_ms"]["count"] == 3
    assert 100 <= board["duration_ms"]["p50"] <= 250
    assert (await get(store_url, "/api/metrics/none.such")).status_code == 404
    assert (await get(store_url, "/api/dashboard", minutes="x")).json()["error"]["code"] == "invalid_filter"


def raw_request(*, bad_spans: int = 0) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "pricing-engine"
    spans = resource_spans.scope_spans.add().spans
    spans.add(
        trace_id=bytes.fromhex("ab" * 16),
        span_id=bytes.fromhex("cd" * 8),
        name="POST /quotes",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
    )
    for i in range(bad_spans):
        spans.add(trace_id=b"\x01\x02\x03", span_id=bytes([i + 1] * 8), name="bad")
    return request.SerializeToString()


async def post(url: str, body: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(f"{url}/v1/traces", content=body, headers={**INGEST, **headers})


async def test_a_partially_invalid_export_is_accepted_with_the_rejected_count(store_url: str):
    answer = await post(store_url, raw_request(bad_spans=2), **{"content-type": "application/x-protobuf"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_spans == 2
    assert "trace_id" in partial.error_message
    assert (await get(store_url, f"/api/traces/{'ab' * 16}")).json()["spans"][0]["name"] == "POST /quotes"


async def test_json_and_gzip_exports_are_accepted(store_url: str):
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "availability-service"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "12" * 16,
                                "spanId": "34" * 8,
                                "name": "GET /availability",
                                "kind": 2,
                                "startTimeUnixNano": "1000",
                                "endTimeUnixNano": "3000",
                            }
                        ]
                    }
                ],
            }
        ]
    }
    answer = await post(store_url, json.dumps(body).encode(), **{"content-type": "application/json"})
    assert (answer.status_code, answer.headers["content-type"], answer.json()) == (200, "application/json", {})

    zipped = await post(
        store_url,
        gzip.compress(raw_request()),
        **{"content-type": "application/x-protobuf", "content-encoding": "gzip"},
    )
    assert zipped.status_code == 200
    stored = {t["trace_id"] for t in (await get(store_url, "/api/traces")).json()["traces"]}
    assert stored == {"12" * 16, "ab" * 16}


async def test_bad_exports_are_refused_with_the_otlp_status_codes(store_url: str):
    garbage = await post(store_url, b"\xff\xff\xff", **{"content-type": "application/x-protobuf"})
    assert garbage.status_code == 400
    assert "not a valid protobuf" in status_pb2.Status.FromString(garbage.content).message

    not_json = await post(store_url, b"{nope", **{"content-type": "application/json"})
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "undecodable_body")

    text = await post(store_url, b"hello", **{"content-type": "text/plain"})
    assert text.status_code == 415

    too_big = await post(store_url, b"\0" * (MAX_BODY_BYTES + 1), **{"content-type": "application/x-protobuf"})
    assert too_big.status_code == 413
    assert (await get(store_url, "/api/traces")).json()["traces"] == []


async def test_bad_read_requests_get_the_error_envelope(store_url: str):
    bad = await get(store_url, "/api/traces", status="sideways")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_filter"
    assert "status" in bad.json()["error"]["message"]
    assert (await get(store_url, "/api/traces", limit="0")).status_code == 400
    assert (await get(store_url, "/api/traces/not-a-trace-id")).json()["error"]["code"] == "invalid_trace_id"
    missing = await get(store_url, f"/api/traces/{'0f' * 16}")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "trace_not_found")
    assert (await get(store_url, "/api/nothing")).status_code == 404


async def test_the_viewer_page_is_served_for_its_routes_and_static_files(store_url: str):
    for path in ("/", f"/traces/{'ab' * 16}", "/dashboard"):
        page = await get(store_url, path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
    index = (await get(store_url, "/")).text
    assert "Bookline" in index
    assert (await get(store_url, "/static/index.html")).status_code == 200
    # an encoded "../" reaches the route as such (a literal one is resolved away by the client)
    escaped = await get(store_url, "/static/..%2fapi.py")
    assert escaped.status_code == 404
    assert "build_app" not in escaped.text
    assert (await get(store_url, "/static/no-such-file.js")).status_code == 404
    assert (await get(store_url, "/healthz")).json()["status"] == "ok"
    assert (await get(store_url, "/readyz")).status_code == 200


def test_trace_context_of_the_sdk_matches_what_the_store_reports():
    # the hex trace id the SDK prints is the one the store indexes (a guard on the id format)
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("x") as span:
        assert len(format(span.get_span_context().trace_id, "032x")) == 32
        assert trace.get_current_span() is span
