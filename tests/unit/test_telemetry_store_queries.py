"""The store's storage and read API over a real SQLite file: trace search and its filters, one whole
trace, logs, services and the dependency map, and the filter checks that answer invalid_filter."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bookline.services.telemetry import queries
from bookline.services.telemetry.decoding import decode_logs, decode_spans
from bookline.services.telemetry.filters import InvalidFilterError, TraceQuery
from bookline.services.telemetry.storage import (
    PENDING,
    ResourceIds,
    Transaction,
    connect_reader,
    connect_writer,
    delete_traces,
    insert_logs,
    insert_spans,
)
from support.otlp import kv

BASE_NS = 1_800_000_000_000_000_000  # 2027-01-15T08:00:00Z
MS = 1_000_000


def tid(n: int) -> str:
    return f"{n:032x}"


def sid(n: int) -> str:
    return f"{n:016x}"


def span(
    trace: int,
    span_id: int,
    parent: int | None,
    service: str,
    name: str,
    start_ms: float,
    duration_ms: float,
    *,
    status: int = 0,
    kind: int = 1,
    attrs: dict | None = None,
    events: list | None = None,
    links: list | None = None,
) -> tuple[str, Span]:
    proto = Span(
        trace_id=bytes.fromhex(tid(trace)),
        span_id=bytes.fromhex(sid(span_id)),
        parent_span_id=bytes.fromhex(sid(parent)) if parent else b"",
        name=name,
        kind=kind,
        start_time_unix_nano=BASE_NS + int(start_ms * MS),
        end_time_unix_nano=BASE_NS + int((start_ms + duration_ms) * MS),
        attributes=[kv(k, v) for k, v in (attrs or {}).items()],
        status=Status(code=status, message="failed" if status == 2 else ""),
        events=events or [],
        links=links or [],
    )
    return service, proto


def request(*spans: tuple[str, Span]) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    for service, proto in spans:
        resource_spans = message.resource_spans.add()
        resource_spans.resource.attributes.append(kv("service.name", service))
        resource_spans.scope_spans.add().spans.append(proto)
    return message


def store(conn: sqlite3.Connection, *spans: tuple[str, Span], sampling: str = PENDING) -> int:
    decoded = decode_spans(request(*spans))
    with Transaction(conn):
        ids = ResourceIds().resolve(conn, decoded.resources)
        return insert_spans(conn, decoded.rows, decoded.traces, ids, {t: sampling for t in decoded.traces}, 0.0)


def booking_trace(
    n: int,
    start_ms: float,
    *,
    outcome: str = "confirmed",
    source: str = "web",
    slow_ms: float = 0,
    failing: bool = False,
) -> list[tuple[str, Span]]:
    """A small booking: POST /bookings -> booking.create -> payment (CLIENT) -> gateway (SERVER)."""
    base = n * 100
    return [
        span(
            n,
            base + 1,
            None,
            "booking-service",
            "POST /bookings",
            start_ms,
            50 + slow_ms,
            kind=2,
            attrs={"http.response.status_code": 201 if outcome == "confirmed" else 402},
        ),
        span(
            n,
            base + 2,
            base + 1,
            "booking-service",
            "booking.create",
            start_ms + 1,
            45 + slow_ms,
            status=1 if outcome == "confirmed" else 2,
            attrs={
                "booking.outcome": outcome,
                "booking.source": source,
                "booking.nights": 2,
                "booking.lock_acquired": True,
            },
        ),
        span(
            n,
            base + 3,
            base + 2,
            "booking-service",
            "booking.process_payment",
            start_ms + 10,
            20,
            kind=3,
            status=2 if failing else 0,
            attrs={"payment.status": "authorized"},
        ),
        span(
            n,
            base + 4,
            base + 3,
            "payment-gateway",
            "POST /v1/authorizations",
            start_ms + 12,
            15,
            kind=2,
            status=2 if failing else 0,
        ),
    ]


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    writer = connect_writer(tmp_path / "telemetry.db")
    yield writer
    writer.close()


@pytest.fixture
def reader(conn: sqlite3.Connection, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    read_only = connect_reader(tmp_path / "telemetry.db")
    yield read_only
    read_only.close()


def search(reader: sqlite3.Connection, **params: str) -> list[dict]:
    return queries.search_traces(reader, TraceQuery.from_params(params))["traces"]


def ids(traces: list[dict]) -> list[str]:
    return [t["trace_id"] for t in traces]


def test_search_lists_whole_trace_summaries_newest_first(conn, reader):
    store(conn, *booking_trace(1, 0))
    store(conn, *booking_trace(2, 1000, outcome="declined", failing=True))
    store(conn, *booking_trace(3, 500))

    found = search(reader)
    assert ids(found) == [tid(2), tid(3), tid(1)]
    declined = found[0]
    assert declined["root_service"] == "booking-service"
    assert declined["root_name"] == "POST /bookings"
    assert declined["start_time"] == "2027-01-15T08:00:01.000000Z"
    assert declined["start_unix_nano"] == BASE_NS + 1000 * MS
    assert declined["duration_ms"] == 50.0
    assert declined["span_count"] == 4
    assert declined["services"] == ["booking-service", "payment-gateway"]
    assert (declined["error"], declined["booking_outcome"], declined["sampling"]) == (True, "declined", "pending")
    assert (found[1]["error"], found[1]["booking_outcome"]) == (False, "confirmed")


def test_spans_of_one_trace_sent_in_several_exports_fold_into_one_summary(conn, reader):
    first, second, third, fourth = booking_trace(7, 0)
    store(conn, third, fourth)  # children first, as a BatchSpanProcessor may send them
    (partial,) = search(reader)
    assert (partial["root_name"], partial["span_count"]) == ("booking.process_payment", 2)
    store(conn, first, second)
    (whole,) = search(reader)
    assert (whole["root_name"], whole["span_count"], whole["duration_ms"]) == ("POST /bookings", 4, 50.0)


def test_a_span_sent_twice_is_stored_once(conn, reader):
    spans = booking_trace(1, 0)
    assert store(conn, *spans) == 4
    assert store(conn, *spans[:2]) == 0  # an exporter retrying after a timeout
    # a retry mixed with a new span: only the new one counts
    assert store(conn, spans[2], span(1, 199, 101, "pricing-engine", "POST /quotes", 3, 1)) == 1
    assert search(reader)[0]["span_count"] == 5
    assert len(queries.get_trace(reader, tid(1))["spans"]) == 5
    counts = {s["name"]: s["span_count"] for s in queries.services(reader)["services"]}
    assert counts == {"booking-service": 3, "payment-gateway": 1, "pricing-engine": 1}


def test_service_filter_matches_a_trace_when_any_of_its_spans_is_of_that_service(conn, reader):
    store(conn, *booking_trace(1, 0))
    store(conn, span(2, 201, None, "pricing-engine", "POST /quotes", 100, 5))
    assert ids(search(reader, service="payment-gateway")) == [tid(1)]
    assert ids(search(reader, service="pricing-engine")) == [tid(2)]
    assert search(reader, service="nobody") == []


def test_span_level_filters_must_all_match_the_same_span(conn, reader):
    store(conn, *booking_trace(1, 0))
    # booking.create is a booking-service span; the gateway has no span of that name
    assert ids(search(reader, service="booking-service", name="booking.create")) == [tid(1)]
    assert search(reader, service="payment-gateway", name="booking.create") == []
    assert ids(search(reader, name="POST /v1/authorizations", status="unset")) == [tid(1)]
    assert search(reader, name="POST /v1/authorizations", status="error") == []


def test_status_filter_finds_traces_holding_a_span_with_that_status(conn, reader):
    store(conn, *booking_trace(1, 0))
    store(conn, *booking_trace(2, 100, outcome="payment_error", failing=True))
    assert ids(search(reader, status="error")) == [tid(2)]
    assert ids(search(reader, status="ok")) == [tid(1)]  # only the confirmed booking.create is OK
    assert ids(search(reader, status="unset")) == [tid(2), tid(1)]


def test_outcome_filter_uses_the_booking_outcome(conn, reader):
    store(conn, *booking_trace(1, 0))
    store(conn, *booking_trace(2, 100, outcome="contention"))
    assert ids(search(reader, outcome="contention")) == [tid(2)]
    assert ids(search(reader, outcome="confirmed")) == [tid(1)]


def test_duration_filters_use_the_whole_trace_duration(conn, reader):
    store(conn, *booking_trace(1, 0))  # 50 ms
    store(conn, *booking_trace(2, 100, slow_ms=2500))  # 2550 ms
    assert ids(search(reader, min_duration_ms="2000")) == [tid(2)]
    assert ids(search(reader, max_duration_ms="50")) == [tid(1)]
    # the gateway span is 15 ms, but the trace it belongs to is 50 ms long
    assert ids(search(reader, service="payment-gateway", min_duration_ms="40", max_duration_ms="60")) == [tid(1)]


def test_time_range_accepts_iso_8601_and_unix_milliseconds(conn, reader):
    store(conn, *booking_trace(1, 0))
    store(conn, *booking_trace(2, 60_000))
    assert ids(search(reader, since="2027-01-15T08:00:30Z")) == [tid(2)]
    assert ids(search(reader, until="2027-01-15T08:00:30+00:00")) == [tid(1)]
    assert ids(search(reader, since=str(BASE_NS // MS + 30_000))) == [tid(2)]
    assert ids(search(reader, since="2027-01-15T08:00:00", until=str(BASE_NS // MS + 1))) == [tid(1)]


def test_attribute_filters_match_strings_numbers_and_booleans(conn, reader):
    store(conn, *booking_trace(1, 0, source="mobile"))
    store(conn, *booking_trace(2, 100, source="web"))
    assert ids(search(reader, **{"attr.booking.source": "mobile"})) == [tid(1)]
    assert ids(search(reader, **{"attr.booking.nights": "2"})) == [tid(2), tid(1)]
    assert search(reader, **{"attr.booking.nights": "3"}) == []
    assert ids(search(reader, **{"attr.booking.lock_acquired": "true"})) == [tid(2), tid(1)]
    assert search(reader, **{"attr.booking.lock_acquired": "false"}) == []
    assert ids(search(reader, **{"attr.http.response.status_code": "201"})) == [tid(2), tid(1)]
    # two attributes on the same span
    assert ids(search(reader, **{"attr.booking.source": "web", "attr.booking.outcome": "confirmed"})) == [tid(2)]
    assert search(reader, **{"attr.booking.source": "web", "attr.payment.status": "authorized"}) == []


def test_filter_values_are_bound_never_sql(conn, reader):
    store(conn, *booking_trace(1, 0))
    assert search(reader, service="x' OR '1'='1") == []
    assert search(reader, **{"attr.booking.source": "web') OR 1=1 --"}) == []
    assert len(search(reader)) == 1  # the table is still there


def test_limit_caps_the_newest_traces(conn, reader):
    for n in range(1, 8):
        store(conn, *booking_trace(n, n * 10))
    assert ids(search(reader, limit="3")) == [tid(7), tid(6), tid(5)]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "broken"},
        {"limit": "0"},
        {"limit": "many"},
        {"limit": "100000"},
        {"since": "yesterday"},
        {"until": "2027-13-45T00:00:00Z"},
        {"min_duration_ms": "-1"},
        {"max_duration_ms": "fast"},
        {"attr.": "x"},
        {'attr.a"b': "x"},
        {"since": "2027-01-02T00:00:00Z", "until": "2027-01-01T00:00:00Z"},
    ],
)
def test_bad_filter_values_are_invalid_filter_errors(params: dict[str, str]):
    with pytest.raises(InvalidFilterError):
        TraceQuery.from_params(params)


def test_a_whole_trace_has_every_span_with_its_parent_kind_status_attributes_events_and_links(conn, reader):
    event = Span.Event(
        name="lock_contention",
        time_unix_nano=BASE_NS + 3 * MS,
        attributes=[kv("booking.competing_reservation", "res_9")],
    )
    link = Span.Link(trace_id=bytes.fromhex(tid(9)), span_id=bytes.fromhex(sid(901)))
    store(
        conn,
        span(5, 501, None, "booking-service", "POST /bookings", 0, 10, kind=2),
        span(
            5,
            502,
            501,
            "booking-service",
            "booking.acquire_lock",
            2,
            4,
            status=2,
            attrs={"booking.lock_acquired": False},
            events=[event],
        ),
        span(5, 503, 501, "notification-service", "booking.confirmed process", 8, 1, kind=5, links=[link]),
    )
    trace = queries.get_trace(reader, tid(5))
    assert trace["trace_id"] == tid(5)
    assert trace["sampling"] == "pending"
    root, lock, consumer = trace["spans"]
    assert (root["name"], root["parent_span_id"], root["kind"], root["service"]) == (
        "POST /bookings",
        None,
        "SERVER",
        "booking-service",
    )
    assert root["resource"]["service.name"] == "booking-service"
    assert (lock["parent_span_id"], lock["kind"], lock["duration_ms"]) == (sid(501), "INTERNAL", 4.0)
    assert lock["status"] == {"code": "ERROR", "message": "failed"}
    assert lock["attributes"] == {"booking.lock_acquired": False}
    assert lock["events"] == [
        {
            "name": "lock_contention",
            "time_unix_nano": BASE_NS + 3 * MS,
            "attributes": {"booking.competing_reservation": "res_9"},
        }
    ]
    assert lock["start_time"] == "2027-01-15T08:00:00.002000Z"
    assert lock["end_unix_nano"] - lock["start_unix_nano"] == 4 * MS
    assert (consumer["kind"], consumer["links"]) == (
        "CONSUMER",
        [{"trace_id": tid(9), "span_id": sid(901), "attributes": {}}],
    )
    assert queries.get_trace(reader, tid(6)) is None


def test_a_missing_parent_status_message_event_list_or_link_list_is_stored_as_null(conn, reader):
    # insert_rows binds these as '' for speed and the statement turns '' back into NULL
    link = Span.Link(trace_id=bytes.fromhex(tid(9)), span_id=bytes.fromhex(sid(901)))
    event = Span.Event(name="retry", time_unix_nano=BASE_NS)
    store(
        conn,
        span(7, 701, None, "booking-service", "POST /bookings", 0, 10),
        span(7, 702, 701, "booking-service", "booking.confirm", 1, 2, status=2, events=[event], links=[link]),
    )
    stored = reader.execute(
        "SELECT span_id, parent_span_id, status_message, events IS NULL, links IS NULL FROM spans ORDER BY span_id"
    ).fetchall()

    assert stored == [(sid(701), None, None, 1, 1), (sid(702), sid(701), "failed", 0, 0)]


def test_services_count_their_spans_and_forget_deleted_ones(conn, reader):
    store(conn, *booking_trace(1, 0))
    store(conn, span(2, 201, None, "pricing-engine", "POST /quotes", 100, 5))
    with Transaction(conn):
        delete_traces(conn, [tid(2)])
    assert queries.services(reader) == {
        "services": [{"name": "booking-service", "span_count": 3}, {"name": "payment-gateway", "span_count": 1}]
    }


def test_dependencies_are_the_spans_whose_parent_is_another_service(conn, reader):
    store(conn, *booking_trace(1, 0))
    store(conn, *booking_trace(2, 100, failing=True))
    store(
        conn,
        span(3, 301, None, "confirmation-service", "booking.confirmed publish", 0, 1, kind=4),
        span(3, 302, 301, "notification-service", "booking.confirmed process", 5, 1, kind=5),
    )
    assert queries.dependencies(reader, None)["edges"] == [
        {"caller": "booking-service", "callee": "payment-gateway", "calls": 2, "errors": 1},
        {"caller": "confirmation-service", "callee": "notification-service", "calls": 1, "errors": 0},
    ]
    assert queries.dependencies(reader, BASE_NS + 50 * MS)["edges"] == [
        {"caller": "booking-service", "callee": "payment-gateway", "calls": 1, "errors": 1}
    ]


def test_logs_of_a_trace_come_oldest_first_and_the_limit_keeps_the_newest(conn, reader):
    message = ExportLogsServiceRequest()
    resource_logs = message.resource_logs.add()
    resource_logs.resource.attributes.append(kv("service.name", "booking-service"))
    records = resource_logs.scope_logs.add().log_records
    for i in range(5):
        record = records.add(
            time_unix_nano=BASE_NS + i,
            severity_number=9,
            severity_text="INFO",
            trace_id=bytes.fromhex(tid(1)),
            span_id=bytes.fromhex(sid(101)),
        )
        record.body.string_value = f"step {i}"
    records.add(time_unix_nano=BASE_NS + 9, trace_id=bytes.fromhex(tid(2))).body.string_value = "other"
    decoded = decode_logs(message)
    with Transaction(conn):
        insert_logs(conn, decoded, ResourceIds().resolve(conn, decoded.resources))

    found = queries.logs(reader, trace_id=tid(1), span_id=None, service=None, since_ns=None, limit=200)["logs"]
    assert [entry["body"] for entry in found] == [f"step {i}" for i in range(5)]
    assert found[0] == {
        "time_unix_nano": BASE_NS,
        "time": "2027-01-15T08:00:00.000000Z",
        "service": "booking-service",
        "severity_text": "INFO",
        "severity_number": 9,
        "body": "step 0",
        "trace_id": tid(1),
        "span_id": sid(101),
        "attributes": {},
    }
    newest = queries.logs(reader, trace_id=tid(1), span_id=None, service=None, since_ns=None, limit=2)["logs"]
    assert [entry["body"] for entry in newest] == ["step 3", "step 4"]
    assert (
        len(
            queries.logs(reader, trace_id=None, span_id=None, service="booking-service", since_ns=None, limit=200)[
                "logs"
            ]
        )
        == 6
    )
