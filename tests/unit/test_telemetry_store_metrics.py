"""The store's metrics read side: the metric list, one metric's series, and the booking dashboard
computed from cumulative counters and histograms (differences of successive points, resets)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from bookline.services.telemetry import metric_queries
from bookline.services.telemetry.decoding import decode_metrics
from bookline.services.telemetry.storage import SeriesIds, Transaction, connect_writer, insert_metrics
from support.otlp import kv

MINUTE = 60_000_000_000
NOW = 1_800_000_000_000_000_000 + 30_000_000_000  # half a minute into 2027-01-15T08:00Z
WINDOW_START = NOW // MINUTE * MINUTE - 4 * MINUTE  # the dashboard of the last 5 minutes starts here
CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


class Exporter:
    """Writes metric points as one SDK process (one service.instance.id) would export them."""

    def __init__(self, conn: sqlite3.Connection, instance: str, started_ns: int) -> None:
        self.conn, self.instance, self.started_ns = conn, instance, started_ns
        self.series = SeriesIds()

    def _request(self) -> tuple[ExportMetricsServiceRequest, object]:
        request = ExportMetricsServiceRequest()
        resource_metrics = request.resource_metrics.add()
        resource_metrics.resource.attributes.extend(
            [kv("service.name", "booking-service"), kv("service.instance.id", self.instance)]
        )
        return request, resource_metrics.scope_metrics.add().metrics

    def _write(self, request: ExportMetricsServiceRequest) -> None:
        decoded = decode_metrics(request)
        with Transaction(self.conn):
            insert_metrics(self.conn, decoded, self.series.resolve(self.conn, decoded.series))

    def counter(self, name: str, at_ns: int, value: int, temporality: int = CUMULATIVE, **attrs: str) -> None:
        request, metrics = self._request()
        metric = metrics.add(name=name, unit="1")
        metric.sum.aggregation_temporality = temporality
        metric.sum.is_monotonic = True
        metric.sum.data_points.add(
            time_unix_nano=at_ns,
            start_time_unix_nano=self.started_ns,
            as_int=value,
            attributes=[kv(k.replace("_", "."), v) for k, v in attrs.items()],
        )
        self._write(request)

    def histogram(self, name: str, at_ns: int, counts: list[int], bounds: list[float]) -> None:
        request, metrics = self._request()
        metric = metrics.add(name=name, unit="ms")
        metric.histogram.aggregation_temporality = CUMULATIVE
        metric.histogram.data_points.add(
            time_unix_nano=at_ns,
            start_time_unix_nano=self.started_ns,
            count=sum(counts),
            sum=0.0,
            bucket_counts=counts,
            explicit_bounds=bounds,
        )
        self._write(request)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    writer = connect_writer(tmp_path / "telemetry.db")
    yield writer
    writer.close()


def minute(i: int, seconds: int = 10) -> int:
    """A time inside the i-th minute of the dashboard window."""
    return WINDOW_START + i * MINUTE + seconds * 1_000_000_000


def test_bookings_per_minute_are_differences_of_cumulative_points_and_a_reset_counts_from_zero(conn):
    web = Exporter(conn, "i-1", started_ns=WINDOW_START - 30 * MINUTE)
    web.counter("booking.attempts", WINDOW_START - 2 * MINUTE, 10, booking_status="success", booking_source="web")
    web.counter("booking.attempts", minute(1), 12, booking_status="success", booking_source="web")
    web.counter("booking.attempts", minute(3), 15, booking_status="success", booking_source="web")
    # the process restarted: a new series (new instance id) whose counter began inside the window
    restarted = Exporter(conn, "i-2", started_ns=minute(3, 40))
    restarted.counter("booking.attempts", minute(4), 1, booking_status="success", booking_source="web")
    # a counter that went down without a new instance: a reset, counted from zero
    web.counter("booking.attempts", minute(4, 20), 2, booking_status="success", booking_source="web")
    # a process that began long before the window, with no earlier point stored: its first value is
    # not this window's
    old = Exporter(conn, "i-3", started_ns=WINDOW_START - 60 * MINUTE)
    old.counter("booking.attempts", minute(0), 100, booking_status="failed", booking_source="mobile")
    old.counter("booking.attempts", minute(2), 105, booking_status="failed", booking_source="mobile")

    board = metric_queries.dashboard(conn, 5, NOW)
    assert board["minutes"] == [
        "2027-01-15T07:56:00.000000Z",
        "2027-01-15T07:57:00.000000Z",
        "2027-01-15T07:58:00.000000Z",
        "2027-01-15T07:59:00.000000Z",
        "2027-01-15T08:00:00.000000Z",
    ]
    assert board["bookings_per_minute"] == [
        {"status": "failed", "source": "mobile", "counts": [0, 0, 5, 0, 0]},
        {"status": "success", "source": "web", "counts": [0, 2, 0, 3, 3]},
    ]


def test_delta_counters_count_as_sent(conn):
    exporter = Exporter(conn, "i-1", started_ns=WINDOW_START)
    exporter.counter("booking.lock.contentions", minute(0), 2, temporality=DELTA, booking_property_id="p-1")
    exporter.counter("booking.lock.contentions", minute(0, 40), 1, temporality=DELTA, booking_property_id="p-1")
    exporter.counter("booking.lock.contentions", minute(4), 4, temporality=DELTA, booking_property_id="p-2")
    assert metric_queries.dashboard(conn, 5, NOW)["lock_contentions_per_minute"] == [3, 0, 0, 0, 4]


def test_rollbacks_and_payment_outcomes_are_totals_over_the_window(conn):
    exporter = Exporter(conn, "i-1", started_ns=WINDOW_START - MINUTE)
    exporter.counter("booking.rollbacks", WINDOW_START - 30_000_000_000, 1, booking_rollback_reason="declined")
    exporter.counter("booking.rollbacks", minute(2), 4, booking_rollback_reason="declined")
    exporter.counter("booking.rollbacks", minute(3), 2, booking_rollback_reason="hold_expired")
    exporter.counter("booking.payment.outcomes", minute(1), 7, payment_status="authorized", payment_method="card")
    exporter.counter("booking.payment.outcomes", minute(1), 3, payment_status="declined", payment_method="card")

    board = metric_queries.dashboard(conn, 5, NOW)
    # hold_expired's series began before the window with no earlier point: only declined's +3 is known
    assert board["rollbacks"] == [{"reason": "declined", "count": 3}]
    assert board["payment_outcomes"] == []  # same: first points of series older than the window

    fresh = Exporter(conn, "i-9", started_ns=WINDOW_START + 1)
    fresh.counter("booking.payment.outcomes", minute(1), 7, payment_status="authorized", payment_method="card")
    fresh.counter("booking.payment.outcomes", minute(1), 3, payment_status="declined", payment_method="card")
    assert metric_queries.dashboard(conn, 5, NOW)["payment_outcomes"] == [
        {"status": "authorized", "method": "card", "count": 7},
        {"status": "declined", "method": "card", "count": 3},
    ]


def test_booking_duration_percentiles_come_from_the_histogram_increments_of_the_window(conn):
    bounds = [100.0, 500.0, 1000.0]
    exporter = Exporter(conn, "i-1", started_ns=WINDOW_START - MINUTE)
    exporter.histogram("booking.duration_ms", WINDOW_START - 10_000_000_000, [5, 5, 5, 5], bounds)  # before
    exporter.histogram("booking.duration_ms", minute(2), [5, 55, 54, 6], bounds)  # +0, +50, +49, +1

    durations = metric_queries.dashboard(conn, 5, NOW)["duration_ms"]
    assert durations["count"] == 100
    assert durations["p50"] == 500.0
    assert durations["p95"] == pytest.approx(959.184, abs=0.001)
    assert durations["p99"] == 1000.0


def test_an_empty_store_has_an_empty_dashboard(conn):
    board = metric_queries.dashboard(conn, 3, NOW)
    assert board["bookings_per_minute"] == []
    assert board["duration_ms"] == {"p50": None, "p95": None, "p99": None, "count": 0}
    assert board["lock_contentions_per_minute"] == [0, 0, 0]


def test_percentile_in_the_open_last_bucket_is_its_lower_bound():
    assert metric_queries.percentile([(0.0, 10.0, 1.0), (10.0, float("inf"), 9.0)], 0.99) == 10.0
    assert metric_queries.percentile([], 0.5) is None


def test_metric_list_and_one_metrics_series_with_points(conn):
    exporter = Exporter(conn, "i-1", started_ns=WINDOW_START)
    exporter.counter("booking.attempts", minute(1), 3, booking_status="success", booking_source="web")
    exporter.counter("booking.attempts", minute(2), 5, booking_status="success", booking_source="web")
    exporter.histogram("booking.duration_ms", minute(2), [1, 2, 0], [10.0, 100.0])

    assert metric_queries.metric_list(conn)["metrics"] == [
        {"name": "booking.attempts", "service": "booking-service", "type": "sum", "unit": "1", "description": ""},
        {
            "name": "booking.duration_ms",
            "service": "booking-service",
            "type": "histogram",
            "unit": "ms",
            "description": "",
        },
    ]
    attempts = metric_queries.metric_series(conn, "booking.attempts", None, WINDOW_START)
    assert (attempts["type"], attempts["unit"]) == ("sum", "1")
    (series,) = attempts["series"]
    assert series["attributes"] == {"booking.source": "web", "booking.status": "success"}
    assert series["points"] == [
        {"time_unix_nano": minute(1), "value": 3.0},
        {"time_unix_nano": minute(2), "value": 5.0},
    ]
    assert len(metric_queries.metric_series(conn, "booking.attempts", None, minute(2))["series"][0]["points"]) == 1

    (histogram,) = metric_queries.metric_series(conn, "booking.duration_ms", "booking-service", 0)["series"]
    assert histogram["points"] == [
        {
            "time_unix_nano": minute(2),
            "count": 3,
            "sum": 0.0,
            "bucket_counts": [1, 2, 0],
            "explicit_bounds": [10.0, 100.0],
        }
    ]
    assert metric_queries.metric_series(conn, "booking.attempts", "pricing-engine", 0) is None
    assert metric_queries.metric_series(conn, "nothing", None, 0) is None
