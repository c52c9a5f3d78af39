"""The store's OTLP/HTTP decoding: protobuf and JSON bodies, gzip, items rejected with a partial
success, whole requests refused (400, 413, 415), and the responses the specification requires."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bookline.services.telemetry.decoding import decode_logs, decode_metrics, decode_spans
from bookline.services.telemetry.otlp import (
    JSON,
    PROTOBUF,
    OtlpError,
    decompress,
    export_response,
    failure_body,
    media_type,
    parse_request,
)
from bookline.services.telemetry.sampling import unpack
from support.otlp import kv

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
ROOT = bytes.fromhex("eee19b7ec3c1b174")
CHILD = bytes.fromhex("eee19b7ec3c1b173")


def trace_request(*spans: Span, service: str = "booking-service") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend([kv("service.name", service), kv("service.instance.id", "i-1")])
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "bookline"
    scope_spans.spans.extend(spans)
    return request


def booking_span(**overrides: object) -> Span:
    fields: dict = dict(
        trace_id=TRACE,
        span_id=ROOT,
        name="booking.create",
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_250_000_000,
        attributes=[
            kv("booking.outcome", "declined"),
            kv("booking.lock_acquired", True),
            kv("booking.nights", 2),
            kv("pricing.rules_applied", ["weekend", "season"]),
            kv("ratio", 0.5),
        ],
        status=Status(code=Status.STATUS_CODE_ERROR, message="Payment declined"),
    )
    fields.update(overrides)
    return Span(**fields)


def test_a_protobuf_span_becomes_a_row_with_hex_ids_json_attributes_and_sampler_facts():
    event = Span.Event(
        name="payment_declined",
        time_unix_nano=1_700_000_000_100_000_000,
        attributes=[kv("payment.decline_reason", "card_declined")],
    )
    request = trace_request(booking_span(events=[event]))
    decoded = decode_spans(parse_request(ExportTraceServiceRequest, request.SerializeToString(), PROTOBUF))

    (row,) = decoded.rows
    trace_id, span_id, parent, service, name, kind, start, end, code, message, attributes, events, links, _, scope = row
    assert (trace_id, span_id, parent) == (TRACE.hex(), ROOT.hex(), None)
    assert (service, name, kind, code, message, scope) == (
        "booking-service",
        "booking.create",
        1,
        2,
        "Payment declined",
        "bookline",
    )
    assert end - start == 250_000_000
    assert json.loads(attributes) == {
        "booking.outcome": "declined",
        "booking.lock_acquired": True,
        "booking.nights": 2,
        "pricing.rules_applied": ["weekend", "season"],
        "ratio": 0.5,
    }
    assert json.loads(events) == [
        {
            "name": "payment_declined",
            "time_unix_nano": 1_700_000_000_100_000_000,
            "attributes": {"payment.decline_reason": "card_declined"},
        }
    ]
    assert links is None
    (facts,) = map(unpack, decoded.facts)
    assert (facts.trace_id, facts.kind, facts.status_code, facts.service) == (
        TRACE.hex(),
        "INTERNAL",
        "ERROR",
        "booking-service",
    )
    assert facts.attributes["booking.outcome"] == "declined"
    assert facts.resource["service.instance.id"] == "i-1"
    summary = decoded.traces[TRACE.hex()]
    assert (summary.span_count, summary.error, summary.root_name, summary.booking_outcome) == (
        1,
        True,
        "booking.create",
        "declined",
    )


def test_otlp_json_with_hex_ids_integer_enums_and_string_int64_decodes_like_protobuf():
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "booking-service"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "bookline"},
                        "spans": [
                            {
                                "traceId": TRACE.hex(),
                                "spanId": CHILD.hex(),
                                "parentSpanId": ROOT.hex(),
                                "name": "booking.acquire_lock",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000005000000",
                                "attributes": [
                                    {"key": "booking.lock_acquired", "value": {"boolValue": False}},
                                    {"key": "booking.lock_ttl_ms", "value": {"intValue": "600000"}},
                                ],
                                "status": {"code": 2, "message": "Lock contention"},
                                "links": [
                                    {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}
                                ],
                                "someFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    decoded = decode_spans(parse_request(ExportTraceServiceRequest, json.dumps(body).encode(), JSON))

    (row,) = decoded.rows
    assert row[:3] == (TRACE.hex(), CHILD.hex(), ROOT.hex())
    assert (row[5], row[8], row[9]) == (1, 2, "Lock contention")
    assert json.loads(row[10]) == {"booking.lock_acquired": False, "booking.lock_ttl_ms": 600000}
    assert json.loads(row[12])[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert decoded.traces[TRACE.hex()].root_name is None  # the root has not arrived


def test_snake_case_json_field_names_are_accepted_too():
    body = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE.hex(),
                                "span_id": ROOT.hex(),
                                "name": "x",
                                "start_time_unix_nano": 1,
                                "end_time_unix_nano": 2,
                            }
                        ]
                    }
                ]
            }
        ]
    }
    decoded = decode_spans(parse_request(ExportTraceServiceRequest, json.dumps(body).encode(), JSON))
    assert [r[1] for r in decoded.rows] == [ROOT.hex()]
    assert decoded.rows[0][3] == "unknown_service"  # no service.name: the specification's default


def test_spans_with_bad_ids_are_rejected_and_counted_while_the_valid_ones_are_kept():
    request = trace_request(
        booking_span(),
        booking_span(trace_id=b"\x01\x02\x03\x04", span_id=CHILD),  # 4-byte trace id
        booking_span(span_id=b"\x00" * 8),  # an all-zero span id is invalid
        booking_span(span_id=CHILD, parent_span_id=b"\x01\x02"),
    )
    decoded = decode_spans(request)

    assert [r[1] for r in decoded.rows] == [ROOT.hex()]
    assert decoded.rejected.count == 3
    message = decoded.rejected.message("spans")
    assert message.startswith("3 spans rejected:")
    assert "trace_id" in message and "span_id" in message and "parent_span_id" in message


def test_a_json_id_that_is_not_hex_rejects_its_span_not_the_request():
    body = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": "not-hex-at-all", "spanId": ROOT.hex(), "name": "bad"},
                            {"traceId": TRACE.hex(), "spanId": ROOT.hex(), "name": "good"},
                        ]
                    }
                ]
            }
        ]
    }
    decoded = decode_spans(parse_request(ExportTraceServiceRequest, json.dumps(body).encode(), JSON))
    assert [r[4] for r in decoded.rows] == ["good"]
    assert decoded.rejected.count == 1


def test_partial_success_response_names_the_rejected_count_in_the_request_encoding():
    protobuf = ExportTraceServiceResponse.FromString(export_response("traces", 3, "3 spans rejected", PROTOBUF))
    assert protobuf.partial_success.rejected_spans == 3
    assert protobuf.partial_success.error_message == "3 spans rejected"

    as_json = json.loads(export_response("traces", 3, "3 spans rejected", JSON))
    assert as_json == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": "3 spans rejected"}}


def test_a_full_success_is_an_empty_response_without_partial_success():
    assert export_response("logs", 0, "", PROTOBUF) == b""
    assert json.loads(export_response("metrics", 0, "", JSON)) == {}


def test_gzip_bodies_are_inflated_and_a_gzip_bomb_is_refused_with_413():
    payload = trace_request(booking_span()).SerializeToString()
    assert decompress(gzip.compress(payload), "gzip") == payload
    assert decompress(payload, None) == payload

    with pytest.raises(OtlpError) as too_big:
        decompress(gzip.compress(b"\0" * 10_000), "gzip", limit=1000)
    assert too_big.value.status == 413


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF),  # not a protobuf message
        (b"{not json", JSON),
        (b"[1, 2]", JSON),  # JSON, but not an export request object
        (json.dumps({"resourceSpans": "nope"}).encode(), JSON),
    ],
)
def test_an_undecodable_body_is_a_400(body: bytes, encoding: str):
    with pytest.raises(OtlpError) as refused:
        parse_request(ExportTraceServiceRequest, body, encoding)
    assert refused.value.status == 400


def test_corrupt_gzip_is_a_400_and_an_unknown_content_encoding_a_415():
    with pytest.raises(OtlpError) as corrupt:
        decompress(b"\x1f\x8b not really gzip", "gzip")
    assert corrupt.value.status == 400
    with pytest.raises(OtlpError) as unknown:
        decompress(b"x", "br")
    assert unknown.value.status == 415


def test_content_types_other_than_protobuf_and_json_are_a_415():
    assert media_type("application/x-protobuf") == PROTOBUF
    assert media_type("application/json; charset=utf-8") == JSON
    for other in ("text/plain", "", None, "application/grpc"):
        with pytest.raises(OtlpError) as refused:
            media_type(other)
        assert refused.value.status == 415


def test_a_failure_body_is_a_google_rpc_status_in_the_request_encoding():
    status = status_pb2.Status.FromString(failure_body(400, "undecodable_body", "bad body", PROTOBUF, None))
    assert status.message == "bad body"
    as_json = json.loads(failure_body(400, "undecodable_body", "bad body", JSON, "ab" * 16))
    assert as_json["message"] == "bad body"
    assert as_json["error"] == {"code": "undecodable_body", "message": "bad body"}


def test_log_records_keep_trace_context_and_bad_ids_are_rejected():
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(kv("service.name", "booking-service"))
    records = resource_logs.scope_logs.add().log_records
    good = records.add(time_unix_nano=5, severity_number=9, severity_text="INFO", trace_id=TRACE, span_id=ROOT)
    good.body.string_value = "booking bk_1 confirmed"
    records.add(observed_time_unix_nano=7, trace_id=b"\x01\x02", span_id=ROOT)
    no_context = records.add(observed_time_unix_nano=8)
    no_context.body.kvlist_value.values.append(kv("event", "started"))

    decoded = decode_logs(request)
    assert decoded.rejected.count == 1
    first, second = decoded.rows
    assert (first[0], first[2], first[3], first[4]) == (5, "booking-service", "INFO", 9)
    assert json.loads(first[5]) == "booking bk_1 confirmed"
    assert (first[6], first[7]) == (TRACE.hex(), ROOT.hex())
    assert second[0] == 8  # no event time: the observed time stands in
    assert (second[6], second[7]) == (None, None)
    assert json.loads(second[5]) == {"event": "started"}


def test_metrics_decode_into_series_and_points_and_bad_histograms_are_rejected():
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend(
        [kv("service.name", "booking-service"), kv("service.instance.id", "i-1")]
    )
    metrics = resource_metrics.scope_metrics.add().metrics
    attempts = metrics.add(name="booking.attempts", unit="1")
    attempts.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    attempts.sum.is_monotonic = True
    attempts.sum.data_points.add(
        time_unix_nano=10,
        start_time_unix_nano=1,
        as_int=4,
        attributes=[kv("booking.status", "success"), kv("booking.source", "web")],
    )
    duration = metrics.add(name="booking.duration_ms", unit="ms")
    duration.histogram.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    duration.histogram.data_points.add(
        time_unix_nano=10, count=3, sum=42.0, bucket_counts=[1, 2, 0], explicit_bounds=[10.0, 100.0]
    )
    duration.histogram.data_points.add(
        time_unix_nano=10, count=3, sum=42.0, bucket_counts=[1, 2], explicit_bounds=[10.0, 100.0]
    )  # one bucket short
    metrics.add(name="pool.usage").gauge.data_points.add(time_unix_nano=10, as_double=0.25)

    decoded = decode_metrics(request)
    assert decoded.rejected.count == 1
    kinds = {s.name: (s.type, s.temporality, s.monotonic, s.instance) for s in decoded.series}
    assert kinds == {
        "booking.attempts": ("sum", 2, True, "i-1"),
        "booking.duration_ms": ("histogram", 2, False, "i-1"),
        "pool.usage": ("gauge", 0, False, "i-1"),
    }
    by_name = {decoded.series[p[0]].name: p for p in decoded.points}
    assert by_name["booking.attempts"][3] == 4.0
    assert json.loads(decoded.series[by_name["booking.attempts"][0]].attributes) == {
        "booking.source": "web",
        "booking.status": "success",
    }
    histogram = by_name["booking.duration_ms"]
    assert (histogram[4], histogram[5], json.loads(histogram[6]), json.loads(histogram[7])) == (
        3,
        42.0,
        [1, 2, 0],
        [10.0, 100.0],
    )
    assert by_name["pool.usage"][3] == 0.25


def test_json_metrics_with_hex_exemplar_ids_parse():
    body = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "m",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [
                                        {
                                            "asDouble": 1.5,
                                            "timeUnixNano": "10",
                                            "exemplars": [
                                                {"traceId": TRACE.hex(), "spanId": ROOT.hex(), "asDouble": 1.5}
                                            ],
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ]
            }
        ]
    }
    request = parse_request(ExportMetricsServiceRequest, json.dumps(body).encode(), JSON)
    exemplar = request.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].exemplars[0]
    assert exemplar.trace_id == TRACE
    assert decode_metrics(request).points[0][3] == 1.5


def test_json_round_trip_of_a_protobuf_request_through_the_otlp_json_mapping():
    # what another OTLP/JSON exporter would send: the protobuf JSON mapping with hex ids
    request = trace_request(booking_span())
    document = json_format.MessageToDict(request)
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["traceId"] = base64.b64decode(span["traceId"]).hex()
    span["spanId"] = base64.b64decode(span["spanId"]).hex()
    parsed = parse_request(ExportTraceServiceRequest, json.dumps(document).encode(), JSON)
    assert parsed == request


def test_a_refused_export_never_echoes_a_card_number_it_carried():
    # json_format quotes the value it could not parse in its message
    body = json.dumps(
        {"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "4242 4242 4242 4242"}]}]}]}
    ).encode()
    with pytest.raises(OtlpError) as refused:
        parse_request(ExportTraceServiceRequest, body, JSON)
    answer = failure_body(refused.value.status, refused.value.code, refused.value.message, JSON, None).decode()
    assert "4242 4242 4242 4242" not in answer
    assert "4242 4242 4242 4242" in refused.value.message, "the parser no longer quotes the value: test moot"
