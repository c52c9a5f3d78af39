"""Keeps the telemetry store's disk use bounded: an age limit on everything, a span limit on traces,
and a row limit on logs and metric points.

A pass deletes in bounded batches (each its own short transaction on the writer thread), so that
ingestion waits milliseconds, not seconds, behind a large clean-up; the caller repeats passes while
one reports ``more``. Traces go whole (oldest first): a waterfall with half its spans missing would
mislead more than a missing trace.

Freed pages are reused by new rows, so a store at its limits stops growing. Only when a large share
of the file is free (after a burst, or a lowered limit) are pages handed back to the file system.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from bookline.services.telemetry.storage import Transaction, delete_traces

INTERVAL_S = 60.0
_FREE_SHARE_TO_VACUUM = 0.25
_VACUUM_PAGES_PER_PASS = 25_000  # about 100 MB with 4 KiB pages


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: float
    max_spans: int
    # logs and metric points have no traces to count; they get a row limit of the same size
    max_logs: int
    max_points: int
    decisions_kept: int = 100_000
    batch: int = 2_000  # traces per transaction (and x50 log or point rows)

    @classmethod
    def from_limits(cls, retention_hours: float, max_spans: int, decisions_kept: int = 100_000) -> RetentionPolicy:
        return cls(retention_hours * 3600.0, max_spans, max_spans, max_spans, decisions_kept)


@dataclass
class RetentionReport:
    traces: int = 0
    spans: int = 0
    logs: int = 0
    points: int = 0
    series: int = 0
    more: bool = False  # a batch limit was reached: run another pass

    @property
    def deleted_anything(self) -> bool:
        return bool(self.traces or self.logs or self.points)


def retention_pass(conn: sqlite3.Connection, policy: RetentionPolicy, now_ns: int) -> RetentionReport:
    """One bounded round of deletions (called on the writer thread)."""
    report = RetentionReport()
    cutoff_ns = now_ns - int(policy.max_age_s * 1e9)

    expired = [
        row[0]
        for row in conn.execute(
            "SELECT trace_id FROM traces WHERE start_ns < ? AND end_ns < ? ORDER BY start_ns LIMIT ?",
            (cutoff_ns, cutoff_ns, policy.batch),
        )
    ]
    _delete_traces(conn, expired, report)
    report.more |= len(expired) == policy.batch

    excess = conn.execute("SELECT total(span_count) FROM traces").fetchone()[0] - policy.max_spans
    if excess > 0:
        oldest, covered = [], 0
        for trace_id, span_count in conn.execute(
            "SELECT trace_id, span_count FROM traces ORDER BY start_ns LIMIT ?", (policy.batch,)
        ):
            if covered >= excess:
                break
            oldest.append(trace_id)
            covered += span_count
        _delete_traces(conn, oldest, report)
        report.more |= covered < excess

    rows_per_batch = policy.batch * 50
    report.logs = _trim(conn, "logs", cutoff_ns, policy.max_logs, rows_per_batch, report)
    report.points = _trim(conn, "metric_points", cutoff_ns, policy.max_points, rows_per_batch, report)
    with Transaction(conn):
        if report.points:
            report.series = conn.execute(
                "DELETE FROM metric_series WHERE NOT EXISTS"
                " (SELECT 1 FROM metric_points p WHERE p.series_id = metric_series.id)"
            ).rowcount
        conn.execute(
            "DELETE FROM decisions WHERE rowid <= (SELECT max(rowid) FROM decisions) - ?", (policy.decisions_kept,)
        )
    return report


def _delete_traces(conn: sqlite3.Connection, trace_ids: list[str], report: RetentionReport) -> None:
    if trace_ids:
        with Transaction(conn):
            report.spans += delete_traces(conn, trace_ids)
        report.traces += len(trace_ids)


def _trim(
    conn: sqlite3.Connection, table: str, cutoff_ns: int, max_rows: int, batch: int, report: RetentionReport
) -> int:
    """Delete rows older than the cutoff, then the oldest beyond ``max_rows`` (ids grow with time)."""
    with Transaction(conn):
        old = conn.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE time_ns < ? LIMIT ?)", (cutoff_ns, batch)
        ).rowcount
        over = conn.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"
            f" WHERE id <= (SELECT max(id) FROM {table}) - ? ORDER BY id LIMIT ?)",
            (max_rows, batch),
        ).rowcount
    report.more |= old == batch or over == batch
    return old + over


def reclaim_space(conn: sqlite3.Connection) -> int:
    """Checkpoint the WAL and, when much of the file is free, give free pages back; returns pages freed."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    if not pages or free / pages < _FREE_SHARE_TO_VACUUM:
        return 0
    # keep a tenth of the file free for the rows that will come next
    release = min(free - pages // 10, _VACUUM_PAGES_PER_PASS)
    if release <= 0:
        return 0
    # executescript steps the pragma to its end; execute() would free a single page
    conn.executescript(f"PRAGMA incremental_vacuum({int(release)});")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return int(release)
