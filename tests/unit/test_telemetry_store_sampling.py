"""Tail sampling applied to the stored traces, driven by a hand-moved clock: a trace is visible as
pending at once, kept or deleted when its wait is over, late spans follow the decision, and a restart
resumes the pending traces and the remembered decisions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bookline.services.telemetry.decoding import decode_spans
from bookline.services.telemetry.sampling import Decision, SamplingConfig
from bookline.services.telemetry.sampling_loop import TraceSampling
from bookline.services.telemetry.storage import ResourceIds, Transaction, connect_writer

# keep traces with an ERROR span, drop the rest; health checks never
POLICIES = {
    "decision_wait": "10s",
    "num_traces": 1000,
    "policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {
            "name": "no-health",
            "type": "drop",
            "drop": {
                "drop_sub_policy": [
                    {
                        "name": "health",
                        "type": "string_attribute",
                        "string_attribute": {"key": "url.path", "values": ["/healthz"]},
                    }
                ]
            },
        },
    ],
}
START_NS = 1_800_000_000_000_000_000


def tid(n: int) -> str:
    return f"{n:032x}"


def span(trace: int, span_id: int, *, parent: int | None = None, error: bool = False, path: str | None = None) -> Span:
    attributes = [KeyValue(key="url.path", value=AnyValue(string_value=path))] if path else []
    return Span(
        trace_id=bytes.fromhex(tid(trace)),
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=f"span {span_id}",
        start_time_unix_nano=START_NS,
        end_time_unix_nano=START_NS + 1_000_000,
        attributes=attributes,
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET),
    )


class Store:
    """The writer-thread side of the store, called directly with a fake clock."""

    def __init__(self, path: Path) -> None:
        self.conn = connect_writer(path)
        self.sampling = TraceSampling(SamplingConfig.from_mapping(POLICIES))
        self.resources = ResourceIds()

    def receive(self, *spans: Span, now: float, wall_s: float = 1000.0) -> int:
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.append(
            KeyValue(key="service.name", value=AnyValue(string_value="booking-service"))
        )
        resource_spans.scope_spans.add().spans.extend(spans)
        decoded = decode_spans(request)
        with Transaction(self.conn):
            ids = self.resources.resolve(self.conn, decoded.resources)
            return self.sampling.admit(self.conn, decoded, ids, now, wall_s)

    def state(self, trace: int) -> tuple[str | None, int]:
        """(sampling state of the trace summary, spans stored)."""
        row = self.conn.execute("SELECT sampling FROM traces WHERE trace_id = ?", (tid(trace),)).fetchone()
        spans = self.conn.execute("SELECT count(*) FROM spans WHERE trace_id = ?", (tid(trace),)).fetchone()[0]
        return (row[0] if row else None), spans


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "telemetry.db")
    yield s
    s.conn.close()


def test_a_trace_is_stored_pending_at_once_and_nothing_is_decided_before_the_wait(store: Store):
    store.receive(span(1, 1), span(2, 1, error=True), now=100.0)
    assert store.state(1) == ("pending", 1)
    assert store.state(2) == ("pending", 1)
    assert store.sampling.settle(store.conn, now=109.9) == []
    assert store.sampling.status()["pending"] == 2


def test_after_the_wait_a_sampled_trace_is_kept_and_the_others_are_deleted(store: Store):
    store.receive(span(1, 1), span(1, 2, parent=1), span(2, 1), span(2, 2, parent=1, error=True), now=100.0)
    store.receive(span(3, 1, error=True, path="/healthz"), now=100.5)

    decided = dict(store.sampling.settle(store.conn, now=111.0))
    assert decided == {tid(1): Decision.NOT_SAMPLED, tid(2): Decision.SAMPLED, tid(3): Decision.DROPPED}
    assert store.state(1) == (None, 0)
    assert store.state(2) == ("kept", 2)
    assert store.state(3) == (None, 0)  # a drop policy wins over the error
    recorded = dict(store.conn.execute("SELECT trace_id, decision FROM decisions").fetchall())
    assert recorded == {tid(1): "not_sampled", tid(2): "sampled", tid(3): "dropped"}
    status = store.sampling.status()
    assert (status["kept"], status["dropped"], status["pending"]) == (1, 2, 0)
    assert status["decision_wait_s"] == 10.0
    assert status["policies"] == ["errors", "no-health"]


def test_spans_arriving_during_the_wait_join_their_trace_and_its_decision(store: Store):
    store.receive(span(1, 1), now=100.0)
    store.receive(span(1, 2, parent=1, error=True), now=105.0)  # the error arrives later, still in time
    assert store.sampling.settle(store.conn, now=110.5) == [(tid(1), Decision.SAMPLED)]
    assert store.state(1) == ("kept", 2)


def test_late_spans_follow_the_decision_at_once(store: Store):
    store.receive(span(1, 1, error=True), span(2, 1), now=100.0)
    store.sampling.settle(store.conn, now=111.0)

    assert store.receive(span(1, 2, parent=1), now=120.0) == 1
    assert store.state(1) == ("kept", 2)
    assert store.receive(span(2, 2, parent=1, error=True), now=120.0) == 0  # its trace was not sampled
    assert store.state(2) == (None, 0)
    assert store.sampling.settle(store.conn, now=200.0) == []  # nothing new was buffered


def test_a_restart_resumes_pending_traces_with_their_arrival_time_and_remembers_decisions(tmp_path: Path):
    before = Store(tmp_path / "telemetry.db")
    before.receive(span(1, 1, error=True), span(2, 1), now=100.0, wall_s=5000.0)
    before.sampling.settle(before.conn, now=111.0)  # 1 kept, 2 not sampled
    before.receive(span(3, 1, error=True), now=112.0, wall_s=5012.0)  # waits until wall 5022
    before.receive(span(4, 1), now=113.0, wall_s=5013.0)
    before.conn.close()

    after = Store(tmp_path / "telemetry.db")  # a new process: its monotonic clock starts elsewhere
    assert after.sampling.restore(after.conn, now=7.0, wall_s=5017.0) == 2
    assert after.sampling.status()["pending"] == 2
    assert after.sampling.settle(after.conn, now=11.9) == []  # trace 3 arrived 5 s ago: 5 s to go
    assert dict(after.sampling.settle(after.conn, now=12.1)) == {tid(3): Decision.SAMPLED}
    assert dict(after.sampling.settle(after.conn, now=13.1)) == {tid(4): Decision.NOT_SAMPLED}
    assert after.state(3) == ("kept", 1)
    assert after.state(4) == (None, 0)

    # decisions made before the restart still rule the late spans
    assert after.receive(span(1, 2, parent=1), now=20.0) == 1
    assert after.state(1) == ("kept", 2)
    assert after.receive(span(2, 2, parent=1, error=True), now=20.0) == 0
    assert after.state(2) == (None, 0)
    after.conn.close()


def test_a_pending_trace_older_than_the_wait_is_decided_on_the_first_tick_after_a_restart(tmp_path: Path):
    before = Store(tmp_path / "telemetry.db")
    before.receive(span(1, 1, error=True), now=100.0, wall_s=5000.0)
    before.conn.close()

    after = Store(tmp_path / "telemetry.db")
    after.sampling.restore(after.conn, now=3.0, wall_s=9000.0)  # the store was down for over an hour
    assert after.sampling.settle(after.conn, now=3.0) == [(tid(1), Decision.SAMPLED)]
    after.conn.close()
