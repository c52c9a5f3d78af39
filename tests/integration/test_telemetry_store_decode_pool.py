"""Large span exports are decoded in a worker process: the store gets the same rows and sampler facts
as decoding in place (attributes kept as JSON text, parsed only when read), a bad body is still refused
with its OTLP status, and small exports never start the worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from bookline.services.telemetry.decode_pool import WORKER_BYTES, DecodePool
from bookline.services.telemetry.decoding import decode_export
from bookline.services.telemetry.otlp import PROTOBUF, OtlpError
from bookline.services.telemetry.sampling import JsonAttributes, unpack
from support.otlp import kv


def export(spans: int, *, bad: int = 0) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend([kv("service.name", "booking-service"), kv("service.instance.id", "i-7")])
    scope = resource_spans.scope_spans.add()
    for i in range(spans):
        scope.spans.add(
            trace_id=(i // 16 + 1).to_bytes(16, "big") if i >= bad else b"\x01",
            span_id=(i + 1).to_bytes(8, "big"),
            parent_span_id=b"" if i % 16 == 0 else (i // 16 * 16 + 1).to_bytes(8, "big"),
            name=f"step {i % 16}",
            start_time_unix_nano=1_800_000_000_000_000_000 + i,
            end_time_unix_nano=1_800_000_000_000_000_000 + i + 1000,
            status=Status(code=Status.STATUS_CODE_ERROR if i % 16 == 3 else Status.STATUS_CODE_UNSET),
            attributes=[kv("booking.outcome", "confirmed"), kv("booking.nights", i % 7)],
        )
    return request.SerializeToString()


@pytest.fixture
async def pool() -> AsyncIterator[DecodePool]:
    decoder = DecodePool(1)
    yield decoder
    decoder.stop()


async def test_a_large_export_decoded_in_the_worker_equals_the_same_export_decoded_in_place(pool: DecodePool):
    body = export(600, bad=2)
    assert len(body) > WORKER_BYTES

    remote = await pool.decode("traces", body, None, PROTOBUF)
    local = decode_export("traces", body, None, PROTOBUF)

    assert pool._pool is not None  # it really went to the worker process
    assert remote.rows == local.rows
    assert remote.facts == local.facts
    assert remote.traces == local.traces
    assert remote.resources == local.resources
    assert (remote.rejected.count, remote.rejected.reasons) == (local.rejected.count, local.rejected.reasons)
    assert remote.rejected.count == 2
    fact = unpack(remote.facts[5])
    assert (fact.kind, fact.status_code, fact.service) == ("INTERNAL", "UNSET", "booking-service")
    assert fact.resource == {"service.instance.id": "i-7", "service.name": "booking-service"}
    assert fact.attributes["booking.nights"] == 7 % 7  # span 7 of the export: the first two were rejected


async def test_a_large_body_that_cannot_be_decoded_is_refused_from_the_worker_with_its_status(pool: DecodePool):
    with pytest.raises(OtlpError) as refused:
        await pool.decode("traces", b"\xff" * (WORKER_BYTES + 10), None, PROTOBUF)
    assert (refused.value.status, refused.value.code) == (400, "undecodable_body")
    assert pool._pool is not None


async def test_small_exports_and_other_signals_are_decoded_in_place(pool: DecodePool):
    decoded = await pool.decode("traces", export(16), None, PROTOBUF)
    assert len(decoded.rows) == 16
    assert unpack(decoded.facts[0]).attributes["booking.outcome"] == "confirmed"
    assert pool._pool is None


def test_json_attributes_are_parsed_only_when_first_read():
    attributes = JsonAttributes('{"booking.outcome":"declined","booking.nights":2}')
    assert attributes._parsed is None
    assert attributes.get("booking.outcome") == "declined"
    assert attributes["booking.nights"] == 2
    assert "payment.status" not in attributes
    assert dict(attributes) == {"booking.outcome": "declined", "booking.nights": 2}
    assert attributes == {"booking.outcome": "declined", "booking.nights": 2}


@pytest.mark.parametrize(
    "text",
    [
        '{"booking.outcome":"declined","booking.nights":2}',
        '{"booking.outcome": "declined", "booking.nights": 2}',  # another encoder's spacing
    ],
)
def test_a_key_the_text_does_not_hold_is_answered_without_parsing(text: str):
    attributes = JsonAttributes(text)
    assert "booking.rollback.reason" not in attributes
    assert attributes.get("url.path", "none") == "none"
    assert attributes._parsed is None  # the sampler's policies mostly ask for keys a span lacks
    assert "booking.nights" in attributes and attributes._parsed is not None


def test_a_key_only_the_parsed_attributes_can_answer_for_is_parsed_for():
    # the key of a nested map: in the text, not an attribute
    inside = JsonAttributes('{"request":{"url.path":"/healthz"}}')
    assert "url.path" not in inside and inside._parsed is not None
    # keys an encoder may escape are never judged by the text
    escaped = JsonAttributes('{"h\\u00f4tel":1,"a\\"b":2}')
    assert "hôtel" in escaped and 'a"b' in escaped
