"""A service's resource hashes once, and still hashes and compares as the SDK's own ``Resource``."""

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.config import Settings
from bookline.telemetry import build_resource


def test_the_resource_is_equal_to_and_hashes_as_the_sdk_resource(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=bookings")
    resource = build_resource("booking-service", Settings())
    plain = Resource(resource.attributes, resource.schema_url)
    assert resource == plain and plain == resource
    assert hash(resource) == hash(plain) == hash(resource)
    assert resource.attributes["service.name"] == "booking-service"
    assert resource.attributes["team"] == "bookings"


def test_spans_of_one_service_are_encoded_under_one_resource():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=build_resource("booking-service", Settings()))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in ("a", "b", "c"):
        provider.get_tracer("test").start_span(name).end()
    request = encode_spans(exporter.get_finished_spans())
    assert len(request.resource_spans) == 1
    assert [s.name for s in request.resource_spans[0].scope_spans[0].spans] == ["a", "b", "c"]
