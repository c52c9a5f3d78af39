"""What makes ingestion cheaper leaves what the store keeps unchanged: one redaction look per export
(a dirty span among clean ones is scrubbed alone, and its trace's summary reads the scrubbed text),
the flat values the decoding worker hands back, the (trace, name) index a version 1 file is migrated
to and the admin listing of spans by name over it, a policy file that reads no span never unpacking
one, and the decoding worker's wider pipes."""

from __future__ import annotations

import fcntl
import multiprocessing
import random
import sqlite3
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bookline.redaction import scrub
from bookline.services.telemetry import queries
from bookline.services.telemetry.admin import spans_named
from bookline.services.telemetry.decode_pool import PIPE_BYTES, _widen_pipes
from bookline.services.telemetry.decoding import (
    SPAN_NULLABLE,
    SPAN_WIDTH,
    DecodedSpans,
    Rejections,
    TraceDelta,
    compact,
    decode_spans,
    facts_of,
    facts_of_values,
    span_rows,
    span_values,
)
from bookline.services.telemetry.filters import TraceQuery
from bookline.services.telemetry.sampling import Decision, SamplingConfig, TailSampler
from bookline.services.telemetry.storage import (
    KEPT,
    SCHEMA_VERSION,
    ResourceIds,
    Transaction,
    connect_reader,
    connect_writer,
    insert_spans,
)
from support.otlp import kv

START_NS = 1_800_000_000_000_000_000
EMAIL = "ana@example.com"
CARD = "4111 1111 1111 1111"


def export(*, dirty: bool) -> ExportTraceServiceRequest:
    """Three traces of 16 spans; with ``dirty``, the root of the second names an e-mail address and
    its booking outcome a card number (nothing else anywhere needs scrubbing)."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend([kv("service.name", "booking-service")])
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "bookline"
    for t in range(3):
        for i in range(16):
            root = i == 0
            outcome = f"declined {CARD}" if dirty and t == 1 and root else "confirmed"
            span = scope.spans.add(
                trace_id=(t + 1).to_bytes(16, "big"),
                span_id=(t * 16 + i + 1).to_bytes(8, "big"),
                parent_span_id=b"" if root else (t * 16 + 1).to_bytes(8, "big"),
                name=f"booking for {EMAIL}" if dirty and t == 1 and root else f"step {i}",
                kind=Span.SPAN_KIND_SERVER if root else Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=START_NS + i * 1000,
                end_time_unix_nano=START_NS + i * 1000 + 500,
                status=Status(code=Status.STATUS_CODE_ERROR if i == 3 else Status.STATUS_CODE_UNSET, message="m"),
            )
            span.attributes.extend([kv("booking.outcome", outcome), kv("booking.nights", i), kv("ok", True)])
    return request


def test_a_dirty_span_among_clean_ones_is_scrubbed_alone_and_its_trace_summary_reads_the_scrubbed_text():
    clean = decode_spans(export(dirty=False))
    dirty = decode_spans(export(dirty=True))
    control = decode_spans(export(dirty=True), redact=False)

    dirty_root = dirty.rows[16]
    assert dirty_root[4] == scrub(f"booking for {EMAIL}") != f"booking for {EMAIL}"
    assert EMAIL not in dirty_root[10] and CARD not in dirty_root[10]
    assert '"booking.outcome":"declined [REDACTED]"' in dirty_root[10]
    # every other row is exactly the clean export's, and the unredacted control kept the texts
    assert [row for i, row in enumerate(dirty.rows) if i != 16] == [r for i, r in enumerate(clean.rows) if i != 16]
    assert control.rows[16][4] == f"booking for {EMAIL}" and CARD in control.rows[16][10]
    summary = dirty.traces[f"{2:032x}"]
    assert (summary.root_name, summary.booking_outcome) == (scrub(f"booking for {EMAIL}"), "declined [REDACTED]")
    assert control.traces[f"{2:032x}"].booking_outcome == f"declined {CARD}"
    assert dirty.traces[f"{1:032x}"] == clean.traces[f"{1:032x}"]
    assert dirty.facts == facts_of(dirty.rows, dirty.resources)


def test_the_flat_values_the_worker_hands_back_are_the_rows_with_their_facts():
    request = export(dirty=False)
    with_everything = request.resource_spans[0].scope_spans[0].spans[5]
    with_everything.events.add(name="retry", time_unix_nano=START_NS)
    with_everything.links.add(trace_id=b"\x09" * 16, span_id=b"\x08" * 8)
    with_everything.status.message = ""
    decoded = decode_spans(request)

    values = span_values(decoded.rows)
    assert len(values) == SPAN_WIDTH * len(decoded.rows)
    for i, row in enumerate(decoded.rows):  # None is bound as '' (and no real value there is '')
        for column in SPAN_NULLABLE:
            assert (values[i * SPAN_WIDTH + column] == "") is (row[column] is None)
    assert {decoded.rows[5][column] is None for column in SPAN_NULLABLE} == {False, True}  # events, links set
    assert span_rows(values) == decoded.rows
    handed = DecodedSpans(None, facts_of_values(values, decoded.resources), {}, decoded.resources, Rejections(),
                          values=values)  # fmt: skip
    assert handed.count == len(decoded.rows)
    assert handed.rows == decoded.rows
    assert handed.facts == decoded.facts


def stored_file(path: Path, traces: int = 40, seed: int = 3) -> list[tuple]:
    """A store file with random spans of a few names (one name several times in a trace, start times
    scattered); returns the span rows."""
    rng = random.Random(seed)
    conn = connect_writer(path)
    ids = ResourceIds().resolve(conn, [compact({"service.name": "svc"})])
    rows, deltas = [], {}
    for _ in range(traces):
        trace_id = rng.randbytes(16).hex()
        starts = [rng.randrange(1000, 2000) for _ in range(rng.randrange(1, 12))]
        for start in starts:
            name = rng.choice(["a", "b", "payment.void", "booking.rollback", "z"])
            rows.append((trace_id, rng.randbytes(8).hex(), None, "svc", name, 0, start, start + 7, 0, None, "{}",
                         None, None, 0, "s"))  # fmt: skip
        deltas[trace_id] = TraceDelta(min(starts), max(starts) + 7, len(starts), False, None, None, None)
    with Transaction(conn):
        insert_spans(conn, rows, deltas, ids, dict.fromkeys(deltas, KEPT), 0.0)
    conn.close()
    return rows


def test_a_version_1_file_is_migrated_to_the_trace_name_index_and_keeps_its_spans(tmp_path: Path):
    path = tmp_path / "telemetry.db"
    rows = stored_file(path)
    with sqlite3.connect(path) as old:  # what version 1 made
        old.execute("DROP INDEX spans_by_trace_name")
        old.execute("CREATE INDEX spans_by_name ON spans (name, trace_id)")
        old.execute("PRAGMA user_version = 1")
    old.close()

    connect_writer(path).close()
    conn = connect_reader(path)
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'spans'")}
    assert {"spans_by_trace", "spans_by_trace_name"} <= indexes and "spans_by_name" not in indexes
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == len(rows)
    found = queries.search_traces(conn, TraceQuery(name="payment.void", limit=1000))["traces"]
    assert {t["trace_id"] for t in found} == {row[0] for row in rows if row[4] == "payment.void"}


@pytest.mark.parametrize("limit", [1, 4, 1000])
@pytest.mark.parametrize("since_ns", [None, 1500])
def test_the_admin_listing_by_name_pages_through_exactly_the_spans_a_scan_would_find(
    tmp_path: Path, limit: int, since_ns: int | None
):
    rows = stored_file(tmp_path / "telemetry.db")
    conn = connect_reader(tmp_path / "telemetry.db")
    names = ["payment.void", "b", "booking.rollback"]
    expected = sorted(
        (name, trace_id, span_id)
        for trace_id, span_id, _, _, name, _, start, *_ in rows
        if name in names and (since_ns is None or start >= since_ns)
    )
    listed, after = [], None
    while True:
        page = spans_named(conn, sorted(names), since_ns, after, limit)
        assert len(page["spans"]) <= limit
        listed += [(s["name"], s["trace_id"], s["span_id"]) for s in page["spans"]]
        if page["next"] is None:
            break
        after = listed[-1]
    assert listed == expected and expected


def held(trace_id: str) -> tuple:
    # attributes and resource that no JSON parser takes: unpacking this span would raise
    return (trace_id, "svc", "s", "INTERNAL", "UNSET", 1, 2, "{not json", "{nor this")


def test_a_policy_file_that_reads_no_span_never_unpacks_one():
    keep_all = TailSampler(SamplingConfig.from_mapping({"policies": [{"name": "all", "type": "always_sample"}]}))
    keep_all.offer([held("t1"), held("t1"), held("t2")], now=0.0)
    assert keep_all.due(now=60.0) == [("t1", Decision.SAMPLED), ("t2", Decision.SAMPLED)]

    # the control: a policy that reads the spans unpacks them (and trips on the text)
    reads = TailSampler(
        SamplingConfig.from_mapping(
            {"policies": [{"name": "o", "type": "string_attribute", "string_attribute": {"key": "k", "values": ["v"]}}]}
        )
    )
    reads.offer([held("t1")], now=0.0)
    with pytest.raises(ValueError):
        reads.due(now=60.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pipe sizes are Linux's")
def test_the_decoding_workers_pipes_hold_a_whole_export():
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        _widen_pipes(pool)
        for end in (pool._result_queue._reader, pool._call_queue._writer):  # type: ignore[attr-defined]
            assert fcntl.fcntl(end.fileno(), fcntl.F_GETPIPE_SZ) >= PIPE_BYTES
        assert pool.submit(sum, [1, 2]).result(timeout=60) == 3
    finally:
        pool.shutdown()
