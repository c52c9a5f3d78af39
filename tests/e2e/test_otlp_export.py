"""Every service as its own process, exporting OTLP/HTTP (protobuf) to a receiver, as it would to
any backend: one booking is one trace across the six services, each request is traced once, logs
carry the trace, and the booking metrics arrive."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bookline.seed import seed_inventory
from support.booking import Client
from support.serving import fake_peer
from support.stack import ProcessStack, stack_settings

pytestmark = pytest.mark.stack

DECODERS = {
    "/v1/traces": ExportTraceServiceRequest,
    "/v1/metrics": ExportMetricsServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
}


class Receiver:
    """Collects what the services export; answers as an OTLP/HTTP endpoint does."""

    def __init__(self) -> None:
        self.received: dict[str, list] = defaultdict(list)

    async def handle(self, request: web.Request) -> web.Response:
        message = DECODERS[request.path]()
        message.ParseFromString(await request.read())
        self.received[request.path].append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def metric_names(self) -> set[str]:
        return {
            m.name
            for message in self.received["/v1/metrics"]
            for rm in message.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }

    def log_records(self) -> list:
        return [
            record
            for message in self.received["/v1/logs"]
            for rl in message.resource_logs
            for sl in rl.scope_logs
            for record in sl.log_records
        ]

    def spans(self) -> list[tuple[str, object]]:
        found = []
        for message in self.received["/v1/traces"]:
            for rs in message.resource_spans:
                service = next(a.value.string_value for a in rs.resource.attributes if a.key == "service.name")
                for ss in rs.scope_spans:
                    found.extend((service, span) for span in ss.spans)
        return found


async def _book_and_collect(tmp_path: Path) -> tuple[Receiver, dict]:
    receiver = Receiver()
    async with fake_peer(receiver.handle) as endpoint:
        settings = stack_settings(tmp_path)
        await seed_inventory(settings, properties=2, rooms_per_property=4, seed=5)
        stack = ProcessStack(
            settings,
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "OTEL_BLRP_SCHEDULE_DELAY": "200",
            },
        )
        try:
            await asyncio.to_thread(stack.start_all)
            client = Client.for_stack(stack)
            response = await asyncio.to_thread(client.book, await asyncio.to_thread(client.body))
            assert response.status_code == 201, response.text
            created = response.json()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                names = {s.name for _, s in receiver.spans() if s.trace_id.hex() == created["trace_id"]}
                logged = any(created["booking_id"] in r.body.string_value for r in receiver.log_records())
                if "notification.send_email" in names and "booking.attempts" in receiver.metric_names() and logged:
                    break
                await asyncio.sleep(0.2)
        finally:
            await asyncio.to_thread(stack.stop)
    return receiver, created


async def test_a_booking_exported_over_otlp_is_one_trace_across_six_services(tmp_path: Path):
    receiver, created = await _book_and_collect(tmp_path)
    trace = [(svc, s) for svc, s in receiver.spans() if s.trace_id.hex() == created["trace_id"]]
    assert {svc for svc, _ in trace} == {
        "booking-service",
        "availability-service",
        "pricing-engine",
        "confirmation-service",
        "payment-gateway",
        "notification-service",
    }
    # each incoming request is traced once (FastAPI's own telemetry stays off beside the instrumentation)
    servers = [s.name for _, s in trace if s.name == "POST /bookings"]
    assert servers == ["POST /bookings"]
    by_id = {s.span_id: s for _, s in trace}
    create = next(s for _, s in trace if s.name == "booking.create")
    assert by_id[create.parent_span_id].name == "POST /bookings"
    assert all(s.parent_span_id in by_id for _, s in trace if s.name != "POST /bookings")

    ours = [r for r in receiver.log_records() if r.trace_id.hex() == created["trace_id"]]
    assert any(created["booking_id"] in r.body.string_value for r in ours), "no log line of the booking in its trace"
    metric_names = receiver.metric_names()
    assert {"booking.attempts", "booking.duration_ms", "booking.payment.outcomes"} <= metric_names
    assert "http.server.request.duration" in metric_names
