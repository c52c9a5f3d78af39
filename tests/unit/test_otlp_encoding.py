"""Bookline's OTLP span encoding gives the very message the stock encoder gives, for every kind of
span, attribute, event, link and status a service makes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from bookline.otlp_encoding import encode_spans, span_exporter


def _parsed(data: bytes) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    message.ParseFromString(data)
    return message


def _spans() -> list:
    exporter = InMemorySpanExporter()
    spans = []
    for service in ("booking-service", "availability-service"):
        provider = TracerProvider(resource=Resource.create({"service.name": service, "service.instance.id": "i-1"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("bookline", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.30.0")
        other = provider.get_tracer("opentelemetry.instrumentation.asgi", "0.66b0")
        remote = SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0xB7AD6B7169203331,
            is_remote=True,
            trace_flags=TraceFlags(1),
            trace_state=TraceState([("vendor", "value"), ("b", "2")]),
        )
        from opentelemetry import trace

        with other.start_as_current_span(
            "POST /bookings", context=trace.set_span_in_context(NonRecordingSpan(remote)), kind=SpanKind.SERVER
        ) as server:
            server.set_attribute("http.response.status_code", 201)
            with tracer.start_as_current_span(
                "booking.create",
                attributes={
                    "booking.id": "bk_0123456789abcdef01234567",
                    "booking.guests": 2,
                    "big": 2**62,
                    "negative": -5,
                    "ratio": 0.25,
                    "flag": True,
                    "off": False,
                    "zero": 0,
                    "empty": "",
                    "unicode": "Zoë – 東京",
                    "steps": ("release_lock", "void"),
                    "numbers": (1, -2, 3),
                    "bools": (True, False),
                    "floats": (1.5, -0.0),
                    "none_yet": (),
                },
                links=[Link(remote, {"link.kind": "follows"})],
            ) as span:
                span.add_event("lock_contention", {"booking.contention_reason": "held_by_other_reservation"})
                span.add_event("bare")
                span.set_status(Status(StatusCode.ERROR, "Lock contention"))
            with tracer.start_as_current_span("ok", kind=SpanKind.CLIENT) as ok:
                ok.set_status(Status(StatusCode.OK))
            for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
                with tracer.start_as_current_span(f"k{kind.value}", kind=kind):
                    pass
        with tracer.start_as_current_span("root"):
            pass
    spans = list(exporter.get_finished_spans())
    return spans


def test_the_encoding_is_the_stock_encoders_message():
    spans = _spans()
    assert _parsed(encode_spans(spans)) == stock_encode_spans(spans)
    # the same again: what was cached encodes the same
    assert _parsed(encode_spans(spans)) == stock_encode_spans(spans)


@pytest.mark.parametrize("value", [True, 1, 1.0, "1"])
def test_equal_values_of_other_types_are_encoded_apart(value):
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for v in (True, 1, 1.0, "1"):
        with tracer.start_as_current_span("s", attributes={"a": v}):
            pass
    spans = list(exporter.get_finished_spans())
    assert _parsed(encode_spans(spans)) == stock_encode_spans(spans)


def test_the_exporter_sends_the_encoding_over_otlp_http():
    received = []

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exporter = span_exporter(endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
        spans = _spans()
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        server.shutdown()
    assert [path for path, _ in received] == ["/v1/traces"]
    assert _parsed(received[0][1]) == stock_encode_spans(spans)
