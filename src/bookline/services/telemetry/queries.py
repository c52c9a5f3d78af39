"""The read side of the store for traces and logs: search, one whole trace, services, the
dependency map and logs. Each function takes a read-only connection and returns JSON-ready dicts in
the shapes of the store's HTTP API.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bookline.services.telemetry.decoding import KINDS, STATUS_CODES
from bookline.services.telemetry.filters import TraceQuery


def iso(unix_nano: int) -> str:
    """Unix nanoseconds as ISO 8601 UTC with microseconds (``2027-03-05T10:00:00.123456Z``)."""
    seconds, nanos = divmod(int(unix_nano), 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _ms(nanos: int) -> float:
    return round(nanos / 1e6, 3)


def services(conn: sqlite3.Connection) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT service, span_count FROM service_spans WHERE span_count > 0 ORDER BY service"
    ).fetchall()
    return {"services": [{"name": name, "span_count": count} for name, count in rows]}


def search_traces(conn: sqlite3.Connection, query: TraceQuery) -> dict[str, Any]:
    if (
        query.service is not None
        and not conn.execute(
            "SELECT 1 FROM service_spans WHERE service = ? AND span_count > 0", (query.service,)
        ).fetchone()
    ):
        return {"traces": []}  # rather than ask every trace whether it has a span of that service
    where, args = query.sql()
    rows = conn.execute(
        "SELECT t.trace_id, t.start_ns, t.end_ns, t.span_count, t.error, t.root_service, t.root_name,"
        f" t.booking_outcome, t.sampling FROM traces t WHERE {where} ORDER BY t.start_ns DESC LIMIT ?",
        [*args, query.limit],
    ).fetchall()
    if not rows:
        return {"traces": []}
    ids = [row[0] for row in rows]
    marks = ",".join("?" * len(ids))
    per_service: dict[str, list[str]] = {}
    for trace_id, service in conn.execute(
        f"SELECT DISTINCT trace_id, service FROM spans WHERE trace_id IN ({marks}) ORDER BY trace_id, service", ids
    ):
        per_service.setdefault(trace_id, []).append(service)
    traces = []
    for trace_id, start, end, count, error, root_service, root_name, outcome, sampling in rows:
        if root_name is None:  # the root span has not arrived (yet): name the trace by its earliest span
            root_service, root_name = conn.execute(
                "SELECT service, name FROM spans WHERE trace_id = ? ORDER BY start_ns LIMIT 1", (trace_id,)
            ).fetchone() or (None, None)
        traces.append(
            {
                "trace_id": trace_id,
                "root_service": root_service,
                "root_name": root_name,
                "start_time": iso(start),
                "start_unix_nano": start,
                "duration_ms": _ms(end - start),
                "span_count": count,
                "services": per_service.get(trace_id, []),
                "error": bool(error),
                "booking_outcome": outcome,
                "sampling": sampling,
            }
        )
    return {"traces": traces}


def get_trace(conn: sqlite3.Connection, trace_id: str) -> dict[str, Any] | None:
    """Every span of one trace, ordered by start; None when the store has no such trace."""
    summary = conn.execute("SELECT sampling FROM traces WHERE trace_id = ?", (trace_id,)).fetchone()
    if summary is None:
        return None
    rows = conn.execute(
        "SELECT s.span_id, s.parent_span_id, s.service, s.name, s.kind, s.start_ns, s.end_ns, s.status_code,"
        " s.status_message, s.attributes, s.events, s.links, s.scope, r.attributes"
        " FROM spans s LEFT JOIN resources r ON r.id = s.resource_id"
        " WHERE s.trace_id = ? ORDER BY s.start_ns, s.span_id",
        (trace_id,),
    ).fetchall()
    spans = [
        {
            "span_id": span_id,
            "parent_span_id": parent,
            "service": service,
            "name": name,
            "kind": KINDS[kind],
            "start_unix_nano": start,
            "end_unix_nano": end,
            "start_time": iso(start),
            "duration_ms": _ms(end - start),
            "status": {"code": STATUS_CODES[code], "message": message},
            "attributes": json.loads(attributes),
            "events": json.loads(events) if events else [],
            "links": json.loads(links) if links else [],
            "scope": scope,
            "resource": json.loads(resource) if resource else {},
        }
        for span_id, parent, service, name, kind, start, end, code, message, attributes, events, links, scope, resource in rows
    ]
    return {"trace_id": trace_id, "sampling": summary[0], "spans": spans}


def last_trace_id(conn: sqlite3.Connection, query: TraceQuery) -> str | None:
    found = search_traces(conn, replace(query, limit=1))["traces"]
    return found[0]["trace_id"] if found else None


def dependencies(conn: sqlite3.Connection, since_ns: int | None) -> dict[str, Any]:
    """Caller -> callee edges: each span whose parent span belongs to another service."""
    scope, args = "", []
    if since_ns is not None:
        scope = " AND c.trace_id IN (SELECT trace_id FROM traces WHERE start_ns >= ?)"
        args.append(since_ns)
    rows = conn.execute(
        "SELECT p.service, c.service, count(*), total(c.status_code = 2) FROM spans c"
        " JOIN spans p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id"
        f" WHERE c.parent_span_id IS NOT NULL AND p.service != c.service{scope}"
        " GROUP BY p.service, c.service ORDER BY p.service, c.service",
        args,
    ).fetchall()
    return {
        "edges": [
            {"caller": caller, "callee": callee, "calls": calls, "errors": int(errors)}
            for caller, callee, calls, errors in rows
        ]
    }


def logs(
    conn: sqlite3.Connection,
    *,
    trace_id: str | None,
    span_id: str | None,
    service: str | None,
    since_ns: int | None,
    limit: int,
) -> dict[str, Any]:
    """The newest ``limit`` matching log records, oldest first."""
    where, args = ["1"], []
    for column, value in (("trace_id", trace_id), ("span_id", span_id), ("service", service)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if since_ns is not None:
        where.append("time_ns >= ?")
        args.append(since_ns)
    rows = conn.execute(
        "SELECT time_ns, service, severity_text, severity_number, body, trace_id, span_id, attributes FROM logs"
        f" WHERE {' AND '.join(where)} ORDER BY time_ns DESC, id DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    return {
        "logs": [
            {
                "time_unix_nano": time_ns,
                "time": iso(time_ns),
                "service": service_name,
                "severity_text": severity_text,
                "severity_number": severity_number,
                "body": json.loads(body),
                "trace_id": log_trace,
                "span_id": log_span,
                "attributes": json.loads(attributes),
            }
            for time_ns, service_name, severity_text, severity_number, body, log_trace, log_span, attributes in reversed(
                rows
            )
        ]
    }
