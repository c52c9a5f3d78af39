"""The read side of the store for metrics: the metric list, one metric's series, and the booking
dashboard computed from the (never sampled) booking metrics.

Counters and histograms arrive cumulative from the SDK: what happened in a minute is the difference
between successive points of one series (one process, one attribute set). A point whose value went
down, or whose start time moved, follows a reset and counts from zero. Delta series count as sent.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bookline.services.telemetry.queries import iso

DELTA = 1
MINUTE_NS = 60_000_000_000


def metric_list(conn: sqlite3.Connection) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT name, service, max(type), max(unit), max(description) FROM metric_series"
        " GROUP BY name, service ORDER BY name, service"
    ).fetchall()
    return {
        "metrics": [
            {"name": name, "service": service, "type": kind, "unit": unit, "description": description}
            for name, service, kind, unit, description in rows
        ]
    }


def metric_series(conn: sqlite3.Connection, name: str, service: str | None, since_ns: int) -> dict[str, Any] | None:
    """Every series of one metric with its points since ``since_ns``; None when the metric is unknown."""
    where, args = "name = ?", [name]
    if service is not None:
        where += " AND service = ?"
        args.append(service)
    series = conn.execute(
        f"SELECT id, service, instance, type, unit, attributes FROM metric_series WHERE {where} ORDER BY service, id",
        args,
    ).fetchall()
    if not series:
        return None
    out = []
    for series_id, series_service, instance, kind, _unit, attributes in series:
        points = [
            {"time_unix_nano": p.time_ns, "value": p.value}
            if kind != "histogram"
            else {
                "time_unix_nano": p.time_ns,
                "count": p.count,
                "sum": p.sum,
                "bucket_counts": p.bucket_counts,
                "explicit_bounds": p.bounds,
            }
            for p in _points(conn, series_id, since_ns)
        ]
        out.append(
            {"service": series_service, "instance": instance, "attributes": json.loads(attributes), "points": points}
        )
    return {"name": name, "type": series[0][3], "unit": series[0][4], "series": out}


@dataclass(frozen=True, slots=True)
class Point:
    time_ns: int
    start_ns: int
    value: float | None
    count: int | None
    sum: float | None
    bucket_counts: list[int]
    bounds: list[float]


def _point(row: tuple[Any, ...]) -> Point:
    time_ns, start_ns, value, count, total, buckets, bounds = row
    return Point(
        time_ns,
        start_ns,
        value,
        count,
        total,
        json.loads(buckets) if buckets else [],
        json.loads(bounds) if bounds else [],
    )


_POINT_COLUMNS = "time_ns, start_ns, value, count, sum, bucket_counts, explicit_bounds"


def _points(conn: sqlite3.Connection, series_id: int, since_ns: int) -> list[Point]:
    rows = conn.execute(
        f"SELECT {_POINT_COLUMNS} FROM metric_points WHERE series_id = ? AND time_ns >= ? ORDER BY time_ns",
        (series_id, since_ns),
    ).fetchall()
    return [_point(row) for row in rows]


def _baseline(conn: sqlite3.Connection, series_id: int, before_ns: int) -> Point | None:
    row = conn.execute(
        f"SELECT {_POINT_COLUMNS} FROM metric_points WHERE series_id = ? AND time_ns < ? ORDER BY time_ns DESC LIMIT 1",
        (series_id, before_ns),
    ).fetchone()
    return _point(row) if row else None


@dataclass(frozen=True, slots=True)
class Increment:
    time_ns: int
    value: float  # counters: what was added; histograms: observations added
    buckets: list[int]
    bounds: list[float]


def increments(
    points: Iterable[Point], baseline: Point | None, temporality: int, window_ns: int
) -> Iterator[Increment]:
    """What each point adds to the one before it (see the module docstring for resets)."""
    previous = baseline
    for p in points:
        current = p.value if p.count is None else float(p.count)
        if temporality == DELTA:
            added, buckets = current, p.bucket_counts
        elif previous is None:
            # no earlier point: the whole value is new only if the series started inside the window
            fresh = p.start_ns >= window_ns
            added, buckets = (current, p.bucket_counts) if fresh else (0.0, [])
        else:
            before = previous.value if previous.count is None else float(previous.count)
            if p.start_ns != previous.start_ns or current is None or before is None or current < before:
                added, buckets = current, p.bucket_counts
            else:
                added = current - before
                same = len(p.bucket_counts) == len(previous.bucket_counts)
                buckets = (
                    [a - b for a, b in zip(p.bucket_counts, previous.bucket_counts, strict=True)]
                    if same
                    else p.bucket_counts
                )
        previous = p
        yield Increment(p.time_ns, added or 0.0, buckets, p.bounds)


def _series_of(conn: sqlite3.Connection, name: str) -> list[tuple[int, int, dict[str, Any]]]:
    rows = conn.execute("SELECT id, temporality, attributes FROM metric_series WHERE name = ?", (name,)).fetchall()
    return [(series_id, temporality, json.loads(attributes)) for series_id, temporality, attributes in rows]


def _increments_of(conn: sqlite3.Connection, name: str, window_ns: int) -> Iterator[tuple[dict[str, Any], Increment]]:
    for series_id, temporality, attributes in _series_of(conn, name):
        baseline = _baseline(conn, series_id, window_ns)
        for inc in increments(_points(conn, series_id, window_ns), baseline, temporality, window_ns):
            yield attributes, inc


def percentile(buckets: list[tuple[float, float, float]], q: float) -> float | None:
    """The q-quantile (0..1) of histogram buckets (lower, upper, count), interpolating inside a bucket;
    in the open last bucket the answer is its lower bound."""
    total = sum(count for _, _, count in buckets)
    if total <= 0:
        return None
    rank, seen = q * total, 0.0
    for lower, upper, count in sorted(buckets, key=lambda b: (b[1], b[0])):
        if count <= 0:
            continue
        if seen + count >= rank:
            if math.isinf(upper):
                return lower
            return round(lower + (upper - lower) * (rank - seen) / count, 3)
        seen += count
    return None


def _histogram_buckets(increments_: Iterable[Increment]) -> list[tuple[float, float, float]]:
    merged: dict[tuple[float, float], float] = defaultdict(float)
    for inc in increments_:
        if not inc.buckets or len(inc.buckets) != len(inc.bounds) + 1:
            continue
        edges = [min(0.0, inc.bounds[0]) if inc.bounds else 0.0, *inc.bounds, math.inf]
        for i, count in enumerate(inc.buckets):
            if count > 0:
                merged[(edges[i], edges[i + 1])] += count
    return [(lower, upper, count) for (lower, upper), count in merged.items()]


def dashboard(conn: sqlite3.Connection, minutes: int, now_ns: int) -> dict[str, Any]:
    """Bookings per minute by outcome and source, booking duration percentiles, lock contentions per
    minute, rollbacks by reason and payment outcomes, over the last ``minutes`` whole minutes."""
    first_minute = now_ns // MINUTE_NS - minutes + 1
    window_ns = first_minute * MINUTE_NS

    def slot(time_ns: int) -> int | None:
        index = time_ns // MINUTE_NS - first_minute
        return index if 0 <= index < minutes else None

    bookings: dict[tuple[str, str], list[float]] = {}
    for attrs, inc in _increments_of(conn, "booking.attempts", window_ns):
        index = slot(inc.time_ns)
        if index is not None and inc.value:
            key = (str(attrs.get("booking.status", "")), str(attrs.get("booking.source", "")))
            bookings.setdefault(key, [0.0] * minutes)[index] += inc.value

    contentions = [0.0] * minutes
    for _, inc in _increments_of(conn, "booking.lock.contentions", window_ns):
        index = slot(inc.time_ns)
        if index is not None:
            contentions[index] += inc.value

    rollbacks: dict[str, float] = defaultdict(float)
    for attrs, inc in _increments_of(conn, "booking.rollbacks", window_ns):
        rollbacks[str(attrs.get("booking.rollback.reason", ""))] += inc.value

    payments: dict[tuple[str, str], float] = defaultdict(float)
    for attrs, inc in _increments_of(conn, "booking.payment.outcomes", window_ns):
        payments[(str(attrs.get("payment.status", "")), str(attrs.get("payment.method", "")))] += inc.value

    durations = list(_increments_of(conn, "booking.duration_ms", window_ns))
    buckets = _histogram_buckets(inc for _, inc in durations)
    return {
        "minutes": [iso((first_minute + i) * MINUTE_NS) for i in range(minutes)],
        "bookings_per_minute": [
            {"status": status, "source": source, "counts": [_whole(c) for c in counts]}
            for (status, source), counts in sorted(bookings.items())
        ],
        "duration_ms": {
            "p50": percentile(buckets, 0.50),
            "p95": percentile(buckets, 0.95),
            "p99": percentile(buckets, 0.99),
            "count": _whole(sum(count for _, _, count in buckets)),
        },
        "lock_contentions_per_minute": [_whole(c) for c in contentions],
        "rollbacks": [
            {"reason": reason, "count": _whole(count)}
            for reason, count in sorted(rollbacks.items(), key=lambda kv: -kv[1])
            if count
        ],
        "payment_outcomes": [
            {"status": status, "method": method, "count": _whole(count)}
            for (status, method), count in sorted(payments.items(), key=lambda kv: -kv[1])
            if count
        ],
    }


def _whole(number: float) -> int | float:
    return int(number) if float(number).is_integer() else round(number, 3)
