"""Bounded disk: whole traces, logs and metric points past the age limit go, the oldest traces go
beyond the span limit, logs and points have a row limit, and freed space goes back to the disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from bookline.services.telemetry.decoding import decode_logs, decode_metrics, decode_spans
from bookline.services.telemetry.retention import RetentionPolicy, reclaim_space, retention_pass
from bookline.services.telemetry.storage import (
    PENDING,
    ResourceIds,
    SeriesIds,
    Transaction,
    connect_writer,
    insert_logs,
    insert_metrics,
    insert_spans,
    record_decisions,
)

HOUR = 3_600_000_000_000
NOW = 1_800_000_000_000_000_000


def name_kv(service: str) -> KeyValue:
    return KeyValue(key="service.name", value=AnyValue(string_value=service))


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    writer = connect_writer(tmp_path / "telemetry.db")
    yield writer
    writer.close()


def add_trace(
    conn: sqlite3.Connection, n: int, start_ns: int, spans: int = 4, *, end_ns: int | None = None, padding: int = 0
) -> None:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(name_kv("booking-service"))
    for i in range(spans):
        resource_spans.scope_spans.add().spans.append(
            Span(
                trace_id=n.to_bytes(16, "big"),
                span_id=(i + 1).to_bytes(8, "big"),
                parent_span_id=b"" if i == 0 else (1).to_bytes(8, "big"),
                name=f"step {i}",
                start_time_unix_nano=start_ns,
                end_time_unix_nano=end_ns if end_ns and i == 0 else start_ns + 1000,
                attributes=[KeyValue(key="padding", value=AnyValue(string_value="x" * padding))] if padding else [],
            )
        )
    decoded = decode_spans(request)
    with Transaction(conn):
        ids = ResourceIds().resolve(conn, decoded.resources)
        insert_spans(conn, decoded.rows, decoded.traces, ids, {t: PENDING for t in decoded.traces}, 0.0)


def add_logs(conn: sqlite3.Connection, *times: int) -> None:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.append(name_kv("booking-service"))
    for t in times:
        resource_logs.scope_logs.add().log_records.add(time_unix_nano=t).body.string_value = f"at {t}"
    decoded = decode_logs(request)
    with Transaction(conn):
        insert_logs(conn, decoded, ResourceIds().resolve(conn, decoded.resources))


def add_points(conn: sqlite3.Connection, name: str, *times: int) -> None:
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.append(name_kv("booking-service"))
    gauge = resource_metrics.scope_metrics.add().metrics.add(name=name).gauge
    for t in times:
        gauge.data_points.add(time_unix_nano=t, as_double=1.0)
    decoded = decode_metrics(request)
    with Transaction(conn):
        insert_metrics(conn, decoded, SeriesIds().resolve(conn, decoded.series))


def trace_numbers(conn: sqlite3.Connection) -> list[int]:
    return sorted(int(t, 16) for (t,) in conn.execute("SELECT trace_id FROM traces"))


def count(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def policy(**overrides: object) -> RetentionPolicy:
    values: dict = {"max_age_s": 24 * 3600.0, "max_spans": 1_000_000, "max_logs": 1_000_000, "max_points": 1_000_000}
    values.update(overrides)
    return RetentionPolicy(**values)


def test_traces_logs_and_points_older_than_the_age_limit_are_deleted(conn):
    add_trace(conn, 1, NOW - 30 * HOUR)
    add_trace(conn, 2, NOW - 25 * HOUR, end_ns=NOW - 23 * HOUR)  # began too long ago, but still running then
    add_trace(conn, 3, NOW - HOUR)
    add_logs(conn, NOW - 30 * HOUR, NOW - HOUR)
    add_points(conn, "old.metric", NOW - 30 * HOUR)
    add_points(conn, "booking.attempts", NOW - 30 * HOUR, NOW - HOUR)

    report = retention_pass(conn, policy(), NOW)

    assert trace_numbers(conn) == [2, 3]
    assert count(conn, "spans") == 8  # trace 1 went whole
    assert (report.traces, report.spans, report.logs, report.points, report.more) == (1, 4, 1, 2, False)
    assert [body for (body,) in conn.execute("SELECT body FROM logs")] == [f'"at {NOW - HOUR}"']
    # a series whose points are all gone goes too
    assert [name for (name,) in conn.execute("SELECT name FROM metric_series")] == ["booking.attempts"]


def test_beyond_the_span_limit_the_oldest_traces_go_whole(conn):
    for n in range(1, 6):
        add_trace(conn, n, NOW - (10 - n) * 60_000_000_000)  # 5 traces of 4 spans, trace 1 oldest
    retention_pass(conn, policy(max_spans=10), NOW)
    assert trace_numbers(conn) == [4, 5]
    assert count(conn, "spans") == 8


def test_large_clean_ups_run_in_bounded_passes(conn):
    for n in range(1, 6):
        add_trace(conn, n, NOW - 48 * HOUR + n)
    first = retention_pass(conn, policy(batch=2), NOW)
    assert (first.traces, first.more) == (2, True)
    passes = 1
    while retention_pass(conn, policy(batch=2), NOW).more:
        passes += 1
    assert trace_numbers(conn) == []
    assert passes >= 2


def test_logs_and_points_keep_only_the_newest_rows_beyond_their_limit(conn):
    add_logs(conn, *(NOW - i for i in range(5, 0, -1)))
    add_points(conn, "booking.attempts", *(NOW - i for i in range(5, 0, -1)))
    retention_pass(conn, policy(max_logs=3, max_points=2), NOW)
    assert [t for (t,) in conn.execute("SELECT time_ns FROM logs ORDER BY time_ns")] == [NOW - 3, NOW - 2, NOW - 1]
    assert [t for (t,) in conn.execute("SELECT time_ns FROM metric_points ORDER BY time_ns")] == [NOW - 2, NOW - 1]


def test_only_the_most_recent_decisions_are_remembered(conn):
    with Transaction(conn):
        record_decisions(conn, [(f"{n:032x}", "sampled") for n in range(10)])
    retention_pass(conn, policy(decisions_kept=4), NOW)
    kept = [int(t, 16) for (t,) in conn.execute("SELECT trace_id FROM decisions ORDER BY rowid")]
    assert kept == [6, 7, 8, 9]


def test_space_freed_by_a_large_deletion_goes_back_to_the_file_system(conn, tmp_path: Path):
    for n in range(1, 201):
        add_trace(conn, n, NOW - 48 * HOUR, spans=10, padding=2000)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages_full = conn.execute("PRAGMA page_count").fetchone()[0]
    while retention_pass(conn, policy(), NOW).more:
        pass
    assert count(conn, "spans") == 0
    assert reclaim_space(conn) > 0
    assert conn.execute("PRAGMA page_count").fetchone()[0] < pages_full / 2
    assert (tmp_path / "telemetry.db").stat().st_size < pages_full * 4096 / 2


def test_a_store_within_its_limits_gives_nothing_back(conn):
    add_trace(conn, 1, NOW)
    report = retention_pass(conn, policy(), NOW)
    assert not report.deleted_anything
    assert reclaim_space(conn) == 0
    assert trace_numbers(conn) == [1]
