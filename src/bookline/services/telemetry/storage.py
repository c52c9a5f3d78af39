"""The telemetry store's SQLite file (``DATA_DIR/telemetry.db``): schema, connections and writes.

The store talks to SQLite through the standard ``sqlite3`` module rather than SQLAlchemy, which the
other services use: ingestion must sustain tens of thousands of spans a second on two cores, and
multi-row INSERT statements of plain tuples on one long-lived connection cost a fraction of what
SQLAlchemy Core's per-row parameter processing does (see :func:`insert_rows` for why not
``executemany``). One writer connection (owned by one thread, see :mod:`writer`) makes every
change; readers have their own read-only connections, which WAL lets run beside the writer.

Durability: WAL with ``synchronous=FULL``, so a commit (and the 200 that follows it) survives a
crash of the process and of the machine.

Tables: ``spans`` (one row per span, attributes/events/links as compact JSON), ``traces`` (one
summary row per trace: time range, span count, error flag, root, booking outcome, sampling state and
arrival time), ``decisions`` (recent sampling decisions, so late spans follow them after a restart),
``service_spans`` (spans per service), ``resources``, ``logs``, ``metric_series`` and ``metric_points``.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

from bookline.services.telemetry.decoding import (
    SPAN_NULLABLE,
    SPAN_WIDTH,
    DecodedLogs,
    DecodedMetrics,
    SeriesKey,
    SpanRow,
    TraceDelta,
    flat_values,
    span_rows,
    span_values,
)

# 2: spans_by_name (name, trace_id) replaced by spans_by_trace_name (trace_id, name), rebuilt when the
# store starts on a version 1 file (idempotent: the drop and the build are each their own statement)
SCHEMA_VERSION = 2
WAL_CHECKPOINT_PAGES = 10_000
PENDING = "pending"
KEPT = "kept"

SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, service, name, kind, start_ns, end_ns, status_code, status_message, "
    "attributes, events, links, resource_id, scope"
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY,
    attributes TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status_code INTEGER NOT NULL,
    status_message TEXT,
    attributes TEXT NOT NULL,
    events TEXT,
    links TEXT,
    resource_id INTEGER,
    scope TEXT
);
-- a trace's spans in one index range: the trace lookup, and an exporter's retry is ignored
CREATE UNIQUE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id, span_id);
-- whether a trace holds a span of some name: one probe (a trace search by name asks it of each
-- trace; admin.spans_named walks the traces with it). Trace first, not name first: a trace's spans
-- arrive together, so their entries go into one leaf page, where (name, trace_id) put every span's
-- entry on a page of its own (trace ids are random), each one more page to write to the WAL and to
-- the database at the checkpoint. Writing bench/telemetry.py's spans, (name, trace_id) cost about
-- 6 µs of the writer's 15 per span, (trace_id, name) costs 3; deleting the traces the packaged
-- policies drop costs a third less. The price: a search for a name few traces have, which asks
-- every trace, reads the whole index rather than one corner of it (72 -> 240 ms with 1M spans)
DROP INDEX IF EXISTS spans_by_name;
CREATE INDEX IF NOT EXISTS spans_by_trace_name ON spans (trace_id, name);
-- spans per service, kept with every insert and delete: counting a million spans takes a second
CREATE TABLE IF NOT EXISTS service_spans (
    service TEXT PRIMARY KEY,
    span_count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL,
    error INTEGER NOT NULL,
    root_service TEXT,
    root_name TEXT,
    booking_outcome TEXT,
    sampling TEXT NOT NULL,
    arrival_s REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns);
CREATE INDEX IF NOT EXISTS traces_with_error ON traces (start_ns) WHERE error = 1;
CREATE INDEX IF NOT EXISTS traces_by_outcome ON traces (booking_outcome, start_ns) WHERE booking_outcome IS NOT NULL;
CREATE INDEX IF NOT EXISTS traces_pending ON traces (arrival_s) WHERE sampling = '{PENDING}';
-- rowid order is decision order (INSERT OR REPLACE gives a re-decided trace a new rowid)
CREATE TABLE IF NOT EXISTS decisions (
    trace_id TEXT NOT NULL UNIQUE,
    decision TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    observed_ns INTEGER NOT NULL,
    service TEXT NOT NULL,
    severity_text TEXT,
    severity_number INTEGER NOT NULL,
    body TEXT NOT NULL,
    trace_id TEXT,
    span_id TEXT,
    attributes TEXT NOT NULL,
    resource_id INTEGER,
    scope TEXT
);
CREATE INDEX IF NOT EXISTS logs_by_trace ON logs (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS logs_by_time ON logs (time_ns);
CREATE TABLE IF NOT EXISTS metric_series (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    service TEXT NOT NULL,
    instance TEXT NOT NULL,
    type TEXT NOT NULL,
    unit TEXT NOT NULL,
    description TEXT NOT NULL,
    temporality INTEGER NOT NULL,
    monotonic INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    UNIQUE (name, service, instance, type, attributes)
);
CREATE TABLE IF NOT EXISTS metric_points (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    value REAL,
    count INTEGER,
    sum REAL,
    bucket_counts TEXT,
    explicit_bounds TEXT
);
CREATE INDEX IF NOT EXISTS metric_points_by_series ON metric_points (series_id, time_ns);
CREATE INDEX IF NOT EXISTS metric_points_by_time ON metric_points (time_ns);
"""


def connect_writer(path: Path) -> sqlite3.Connection:
    """The one connection that writes, with the schema in place.

    ``isolation_level=None``: transactions are explicit (``BEGIN IMMEDIATE`` ... ``COMMIT``).
    ``check_same_thread=False`` only so that it can be closed from the thread that stops the store.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # set before the first table exists, so that freed pages can be returned to the file system
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: the trace index stays in memory while it grows
    conn.execute("PRAGMA journal_size_limit = 67108864")  # the WAL file shrinks back after a checkpoint
    # checkpoint after 10,000 pages of WAL (40 MiB, under journal_size_limit) rather than SQLite's
    # 1000. SQLite checkpoints inside the commit that crosses the limit, on the writer thread; a span
    # dirties index pages at random places (trace ids are random), and a page rewritten by many
    # commits is copied into the database once per checkpoint, so checkpointing less often cut the
    # writer's time per span by about a fifth (bench/telemetry.py). Durability does not change: a
    # commit is durable once in the WAL.
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA cache_size = -32768")
    conn.execute("PRAGMA mmap_size = 268435456")
    return conn


class Transaction:
    """``with Transaction(conn):`` runs a ``BEGIN IMMEDIATE`` transaction, rolled back on error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


class ResourceIds:
    """Row ids of resources already stored (a process sends the same resource with every export)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def resolve(self, conn: sqlite3.Connection, resources: Sequence[str]) -> list[int]:
        ids = []
        for attributes in resources:
            found = self._ids.get(attributes)
            if found is None:
                conn.execute("INSERT OR IGNORE INTO resources (attributes) VALUES (?)", (attributes,))
                found = conn.execute("SELECT id FROM resources WHERE attributes = ?", (attributes,)).fetchone()[0]
                self._ids[attributes] = found
            ids.append(found)
        return ids

    def forget(self) -> None:
        self._ids.clear()


_UPSERT_TRACE = (
    "INSERT INTO traces (trace_id, start_ns, end_ns, span_count, error, root_service, root_name, booking_outcome,"
    " sampling, arrival_s) VALUES {values}",
    f"""
ON CONFLICT (trace_id) DO UPDATE SET
    start_ns = min(start_ns, excluded.start_ns),
    end_ns = max(end_ns, excluded.end_ns),
    span_count = span_count + excluded.span_count,
    error = max(error, excluded.error),
    root_service = coalesce(excluded.root_service, root_service),
    root_name = coalesce(excluded.root_name, root_name),
    booking_outcome = coalesce(excluded.booking_outcome, booking_outcome),
    sampling = CASE WHEN excluded.sampling = '{KEPT}' THEN '{KEPT}' ELSE sampling END
""",
)


_INSERT_SPAN = (f"INSERT OR IGNORE INTO spans ({SPAN_COLUMNS}) VALUES {{values}}", "")
_CHUNK_ROWS = 256


@lru_cache(maxsize=128)
def _statement_text(head: str, tail: str, width: int, size: int, empty_as_null: tuple[int, ...]) -> str:
    """The text of ``statement`` for ``size`` rows; built once (the sqlite3 module's statement cache
    is keyed by this text)."""
    marks = ["?"] * width
    for column in empty_as_null:
        marks[column] = "NULLIF(?,'')"
    row = "(" + ",".join(marks) + ")"
    return head.format(values=",".join([row] * size)) + tail


def insert_rows(
    conn: sqlite3.Connection,
    statement: tuple[str, str],
    rows: Sequence[Sequence[object]],
    replace: tuple[int, Sequence[object]] | None = None,
    empty_as_null: tuple[int, ...] = (),
) -> int:
    """Run ``statement`` (head with ``{values}``, tail) over ``rows`` with many rows per statement;
    returns the rows changed. ``replace=(column, ids)`` swaps each row's value in that column, an
    index, for ``ids[index]`` (the resource and series row ids the decoder could not know).

    ``empty_as_null`` names text columns whose None is bound as '' and stored as NULL again by the
    statement (``NULLIF(?,'')``), so '' must never be a real value there. Why: the sqlite3 module
    binds None through its adaptation protocol (a registry lookup and two attribute lookups, with the
    GIL held), which made binding a span row, with its three None on average, twice as slow.

    Why not ``executemany``: it steps once per row, and the sqlite3 module lets go of the GIL at
    every step. With the event loop busy decoding, getting it back costs up to a switch interval
    each time, which made the writer wait for the GIL most of the time. Chunks are powers of two,
    so only a handful of distinct statements are ever prepared (and stay cached).
    """
    if not rows:
        return 0
    width = len(rows[0])
    return insert_values(conn, statement, flat_values(rows, width, empty_as_null), width, replace, empty_as_null)


def insert_values(
    conn: sqlite3.Connection,
    statement: tuple[str, str],
    values: list[object],
    width: int,
    replace: tuple[int, Sequence[object]] | None = None,
    empty_as_null: tuple[int, ...] = (),
) -> int:
    """:func:`insert_rows` of rows already flattened into ``values`` (``width`` values a row, None
    already '' in the ``empty_as_null`` columns). The ``replace`` column is swapped in ``values``."""
    if not values:
        return 0
    head, tail = statement
    if replace is not None:
        column, ids = replace
        values[column::width] = map(ids.__getitem__, values[column::width])
    count = len(values) // width
    before = conn.total_changes
    done = 0
    while done < count:
        size = min(_CHUNK_ROWS, 1 << ((count - done).bit_length() - 1))
        text = _statement_text(head, tail, width, size, empty_as_null)
        conn.execute(text, values[done * width : (done + size) * width])
        done += size
    return conn.total_changes - before


def insert_spans(
    conn: sqlite3.Connection,
    rows: Sequence[SpanRow] | None,
    traces: dict[str, TraceDelta],
    resource_ids: Sequence[int],
    sampling: dict[str, str],
    arrival_s: float,
    *,
    values: list[object] | None = None,
) -> int:
    """Insert spans and fold them into their traces' summaries and the per-service counts (inside
    the caller's transaction).

    ``rows`` carry resource indexes into ``resource_ids``, or are given as their flat ``values``
    (:func:`~bookline.services.telemetry.decoding.span_values`);
    ``sampling`` is each trace's state (pending or kept). A span already stored (an exporter retrying
    an export whose answer it missed) is not stored or counted twice. Returns the number of spans
    inserted.
    """
    if values is None:
        values = span_values(rows or [])
    count = len(values) // SPAN_WIDTH
    services = Counter(values[3::SPAN_WIDTH])
    conn.execute("SAVEPOINT spans")
    # a copy: the resource ids go into it, and a retry below reads the rows from ``values``
    inserted = insert_values(conn, _INSERT_SPAN, values[:], SPAN_WIDTH, (13, resource_ids), SPAN_NULLABLE)
    if inserted != count:
        # a retry (rare): start again with only the spans not stored yet, so every count is exact
        conn.execute("ROLLBACK TO spans")
        rows = [
            row
            for row in (rows if rows is not None else span_rows(values))
            if not conn.execute("SELECT 1 FROM spans WHERE trace_id = ? AND span_id = ?", row[:2]).fetchone()
        ]
        inserted = insert_rows(conn, _INSERT_SPAN, rows, replace=(13, resource_ids), empty_as_null=SPAN_NULLABLE)
        services = Counter(row[3] for row in rows)
        fresh = Counter(row[0] for row in rows)
        traces = {trace_id: delta for trace_id, delta in traces.items() if fresh[trace_id]}
        for trace_id, delta in traces.items():
            delta.span_count = fresh[trace_id]
    conn.execute("RELEASE spans")
    insert_rows(
        conn,
        _UPSERT_TRACE,
        [
            (
                trace_id,
                d.start_ns,
                d.end_ns,
                d.span_count,
                int(d.error),
                d.root_service,
                d.root_name,
                d.booking_outcome,
                sampling[trace_id],
                arrival_s,
            )
            for trace_id, d in traces.items()
        ],
    )
    _count_services(conn, services)
    return inserted


_COUNT_SERVICES = (
    "INSERT INTO service_spans (service, span_count) VALUES {values}",
    " ON CONFLICT (service) DO UPDATE SET span_count = span_count + excluded.span_count",
)


def _count_services(conn: sqlite3.Connection, change: Counter[str]) -> None:
    insert_rows(conn, _COUNT_SERVICES, [(service, n) for service, n in change.items() if n])


def _chunks(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def mark_kept(conn: sqlite3.Connection, trace_ids: Sequence[str]) -> None:
    for chunk in _chunks(trace_ids):
        marks = ",".join("?" * len(chunk))
        conn.execute(f"UPDATE traces SET sampling = '{KEPT}' WHERE trace_id IN ({marks})", chunk)


def delete_traces(conn: sqlite3.Connection, trace_ids: Sequence[str]) -> int:
    """Delete whole traces (their spans and summary rows); returns the number of spans deleted."""
    deleted = 0
    for chunk in _chunks(trace_ids):
        marks = ",".join("?" * len(chunk))
        gone = conn.execute(
            f"SELECT service, count(*) FROM spans WHERE trace_id IN ({marks}) GROUP BY service", chunk
        ).fetchall()
        _count_services(conn, Counter({service: -n for service, n in gone}))
        deleted += conn.execute(f"DELETE FROM spans WHERE trace_id IN ({marks})", chunk).rowcount
        conn.execute(f"DELETE FROM traces WHERE trace_id IN ({marks})", chunk)
    return deleted


def record_decisions(conn: sqlite3.Connection, decisions: Sequence[tuple[str, str]]) -> None:
    insert_rows(conn, ("INSERT OR REPLACE INTO decisions (trace_id, decision) VALUES {values}", ""), decisions)


_INSERT_LOG = (
    "INSERT INTO logs (time_ns, observed_ns, service, severity_text, severity_number, body, trace_id, span_id,"
    " attributes, resource_id, scope) VALUES {values}",
    "",
)


def insert_logs(conn: sqlite3.Connection, decoded: DecodedLogs, resource_ids: Sequence[int]) -> None:
    insert_rows(conn, _INSERT_LOG, decoded.rows, replace=(9, resource_ids))


class SeriesIds:
    """Row ids of metric series already stored (the same series comes back with every export)."""

    def __init__(self) -> None:
        self._ids: dict[SeriesKey, int] = {}

    def resolve(self, conn: sqlite3.Connection, series: Sequence[SeriesKey]) -> list[int]:
        ids = []
        for key in series:
            found = self._ids.get(key)
            if found is None:
                identity = (key.name, key.service, key.instance, key.type, key.attributes)
                conn.execute(
                    "INSERT OR IGNORE INTO metric_series (name, service, instance, type, unit, description,"
                    " temporality, monotonic, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key.name,
                        key.service,
                        key.instance,
                        key.type,
                        key.unit,
                        key.description,
                        key.temporality,
                        int(key.monotonic),
                        key.attributes,
                    ),
                )
                found = conn.execute(
                    "SELECT id FROM metric_series WHERE name = ? AND service = ? AND instance = ? AND type = ?"
                    " AND attributes = ?",
                    identity,
                ).fetchone()[0]
                self._ids[key] = found
            ids.append(found)
        return ids

    def forget(self) -> None:
        self._ids.clear()


_INSERT_POINT = (
    "INSERT INTO metric_points (series_id, time_ns, start_ns, value, count, sum, bucket_counts, explicit_bounds)"
    " VALUES {values}",
    "",
)


def insert_metrics(conn: sqlite3.Connection, decoded: DecodedMetrics, series_ids: Sequence[int]) -> None:
    insert_rows(conn, _INSERT_POINT, decoded.points, replace=(0, series_ids))
