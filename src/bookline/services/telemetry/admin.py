"""The telemetry store's admin reads (``/admin``, token-protected, for ``bookline audit``): the spans
of some names in one query (the compensations of every failed booking, found by reservation rather
than by one trace search per booking), how far back the store keeps telemetry, and the card and data
scans of everything stored (spans, logs, metric series and resources)."""

from __future__ import annotations

import json
import sqlite3
from typing import Annotated, Any

from fastapi import FastAPI, Query

from bookline.config import Settings
from bookline.domain.errors import InvalidRequest
from bookline.services.common.admin import (
    DEFAULT_PAGE_ROWS,
    After,
    InvalidCursor,
    Limit,
    ScanBody,
    Since,
    admin_router,
    cursor_values,
    encode_cursor,
    mount_admin,
)
from bookline.services.common.data_scan import AnyScan, CardScan, DataScan, row_key
from bookline.services.telemetry.decoding import STATUS_CODES
from bookline.services.telemetry.store import TelemetryStore

MAX_NAMES = 20
_NS = 1_000_000_000


def horizon(conn: sqlite3.Connection) -> dict[str, Any]:
    """The start of the oldest trace still stored: anything older was deleted (or never kept)."""
    oldest = conn.execute("SELECT min(start_ns) FROM traces").fetchone()[0]
    return {"oldest_start_unix_nano": oldest}


def spans_named(
    conn: sqlite3.Connection,
    names: list[str],
    since_ns: int | None,
    after: tuple[str, str, str] | None,
    limit: int,
) -> dict[str, Any]:
    """Spans with one of ``names``, in (name, trace, span) order, with their attributes.

    Name by name, the traces are walked in trace id order from the cursor and each one asked for its
    spans of that name (one probe of the (trace, name) index; every stored span belongs to a stored
    trace, whose summary row is written with it and deleted with it): a name common enough stops
    after ``limit`` spans, a rare one is a pass over the traces, as the card scan is over the spans.
    """
    rows: list[Any] = []
    for name in sorted(names):
        if after is not None and name < after[0]:
            continue
        where, args = ["s.name = ?"], [name]
        if since_ns is not None:
            # a span that started at or after since_ns is in a trace that ended at or after it
            where += ["t.end_ns >= ?", "s.start_ns >= ?"]
            args += [since_ns, since_ns]
        if after is not None and name == after[0]:
            where += ["t.trace_id >= ?", "(s.trace_id, s.span_id) > (?, ?)"]
            args += [after[1], after[1], after[2]]
        rows += conn.execute(
            "SELECT s.name, s.trace_id, s.span_id, s.start_ns, s.status_code, s.attributes"
            # the (trace, name) index, not the (trace, span) one the span order would tempt the
            # planner to: that one reads every span of every trace to look at its name
            " FROM traces t CROSS JOIN spans s INDEXED BY spans_by_trace_name ON s.trace_id = t.trace_id"
            f" WHERE {' AND '.join(where)} ORDER BY t.trace_id, s.span_id LIMIT ?",
            [*args, limit + 1 - len(rows)],
        ).fetchall()
        if len(rows) > limit:
            break
    more = len(rows) > limit
    rows = rows[:limit]
    spans = [
        {
            "name": name,
            "trace_id": trace_id,
            "span_id": span_id,
            "start_unix_nano": start,
            "status": STATUS_CODES[code],
            "attributes": json.loads(attributes),
        }
        for name, trace_id, span_id, start, code, attributes in rows
    ]
    next_cursor = encode_cursor(list(rows[-1][:3])) if more else None
    return {"spans": spans, "next": next_cursor, **horizon(conn)}


def _chosen_by_sender(links: str | None) -> str | None:
    """The attributes of a span's links, as JSON: what a sender chose of them. The linked trace and
    span ids are ids, kept as sent, like the span's own (sixteen hex digits may all be digits)."""
    if not links:
        return links
    try:
        return json.dumps([link.get("attributes") for link in json.loads(links)], ensure_ascii=False)
    except (ValueError, AttributeError, TypeError):
        return links  # not what the store writes: look through all of it


def scan_stored(conn: sqlite3.Connection, since_ns: int | None, scan: AnyScan | None = None) -> dict[str, Any]:
    """Every stored span, log record, metric series and resource, looked through with ``scan`` (for
    card numbers unless given) in every text a sender chose (what the store's redaction scrubs as they
    arrive)."""
    scan = scan if scan is not None else CardScan()
    span_where, log_where, args = "", "", []
    if since_ns is not None:
        span_where, log_where, args = " WHERE start_ns >= ?", " WHERE time_ns >= ?", [since_ns]
    columns = "trace_id, span_id, service, name, status_message, attributes, events, links, scope"
    for trace_id, span_id, service, name, message, attributes, events, links, scope in conn.execute(
        f"SELECT {columns} FROM spans{span_where}", args
    ):
        scan.row(
            "spans",
            row_key([trace_id, span_id]),
            (("service", service), ("name", name), ("status_message", message), ("attributes", attributes),
             ("events", events), ("links", _chosen_by_sender(links)), ("scope", scope)),
        )  # fmt: skip
    for log_id, service, body, attributes, severity, scope in conn.execute(
        f"SELECT id, service, body, attributes, severity_text, scope FROM logs{log_where}", args
    ):
        scan.row(
            "logs",
            row_key([log_id]),
            (("service", service), ("body", body), ("attributes", attributes), ("severity_text", severity),
             ("scope", scope)),
        )  # fmt: skip
    for series_id, name, service, instance, unit, description, attributes in conn.execute(
        "SELECT id, name, service, instance, unit, description, attributes FROM metric_series"
    ):
        scan.row(
            "metric_series",
            row_key([series_id]),
            (("name", name), ("service", service), ("instance", instance), ("unit", unit),
             ("description", description), ("attributes", attributes)),
        )  # fmt: skip
    for resource_id, attributes in conn.execute("SELECT id, attributes FROM resources"):
        scan.row("resources", row_key([resource_id]), (("attributes", attributes),))
    return scan.body()


def _cursor(after: str | None) -> tuple[str, str, str] | None:
    if after is None:
        return None
    name, trace_id, span_id = cursor_values(after, 3)
    if not all(isinstance(v, str) for v in (name, trace_id, span_id)):
        raise InvalidCursor(message="the cursor is not one this endpoint gave out")
    return name, trace_id, span_id


def add_admin_routes(app: FastAPI, settings: Settings, store: TelemetryStore) -> None:
    router = admin_router(settings)

    @router.get("/spans")
    async def list_spans(
        name: Annotated[list[str], Query(description="span names (repeat the parameter for several)")],
        since: Since = None,
        after: After = None,
        limit: Limit = DEFAULT_PAGE_ROWS,
    ) -> dict[str, Any]:
        """The stored spans with these names that started at or after ``since``, each with its trace
        and attributes, plus ``oldest_start_unix_nano``: the store keeps nothing older."""
        if not name or len(name) > MAX_NAMES:
            raise InvalidRequest("invalid_names", f"give between 1 and {MAX_NAMES} span names")
        since_ns = int(since * _NS) if since is not None else None
        return await store.read(spans_named, sorted(set(name)), since_ns, _cursor(after), limit)

    @router.get("/horizon")
    async def store_horizon() -> dict[str, Any]:
        """How far back the store keeps telemetry: its oldest trace, and its retention setting."""
        found = await store.read(horizon)
        return {**found, "retention_hours": settings.telemetry_retention_hours}

    @router.get("/card-scan")
    async def card_scan(since: Since = None) -> dict[str, Any]:
        """Where stored spans (names, attributes, events), logs or metric attributes hold something
        that is a card number (never the value); ``since`` limits the spans and logs looked at."""
        since_ns = int(since * _NS) if since is not None else None
        return await store.read(scan_stored, since_ns)

    @router.post("/data-scan")
    async def data_scan(body: ScanBody) -> dict[str, Any]:
        """Where stored spans, logs, metric series or resources hold a card number, an e-mail address,
        a phone number or one of the given guests' names (never the value); ``since`` limits the spans
        and logs looked at. No telemetry may hold any of them."""
        since_ns = int(body.since * _NS) if body.since is not None else None
        return await store.read(scan_stored, since_ns, DataScan(names=body.names))

    mount_admin(app, router)
