"""Tail sampling applied to the store: the :class:`TailSampler` sees every span as it is written, and
every trace's decision keeps or deletes what was stored.

A trace is stored as soon as it arrives with sampling state ``pending`` (a user who just booked sees
it at once); when its decision wait is over, SAMPLED makes it ``kept`` and NOT_SAMPLED or DROPPED
deletes it. A span arriving after the decision follows it at once: written as ``kept``, or not
written at all.

The sampler is asked on the store's event loop, and what it answered is written by a job submitted
to the writer (see :mod:`writer`) at once, before anything else can ask it: :meth:`offer` then
:meth:`store` for an export's spans, :meth:`due` then :meth:`apply` for the decisions. The writer
runs jobs in the order they were submitted, so spans and decisions reach the database in the order
the sampler saw them, while the writer's thread, which every export waits for, spends no time in
the sampler. (:meth:`admit` and :meth:`settle` do both halves in one call; :meth:`restore` runs on
the writer thread before the store takes any export.)

A restart loses nothing: pending traces are offered to the new sampler again with their original
arrival time, and the most recent decisions are remembered, so late spans still follow them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bookline.services.telemetry.decoding import KINDS, STATUS_CODES, DecodedSpans, TraceDelta, span_values
from bookline.services.telemetry.sampling import Decision, PackedFacts, SamplingConfig, TailSampler
from bookline.services.telemetry.storage import (
    KEPT,
    PENDING,
    Transaction,
    delete_traces,
    insert_spans,
    mark_kept,
    record_decisions,
)

TICK_S = 0.25  # how often due traces are decided
DECIDED_CACHE_SIZE = 100_000


def remembered_decisions(config: SamplingConfig, decided_cache_size: int = DECIDED_CACHE_SIZE) -> int:
    """How many recent decisions are kept, in the sampler and on disk for a restart."""
    return max(decided_cache_size, config.sampled_cache_size + config.non_sampled_cache_size)


@dataclass(slots=True)
class AdmittedSpans:
    """The spans of an export the sampler let through, ready for :meth:`TraceSampling.store`."""

    values: list[Any]  # flat span values (decoding.span_values)
    traces: dict[str, TraceDelta]
    sampling: dict[str, str]  # each trace's state: pending, or kept when already decided so


class TraceSampling:
    """The store's tail sampler and what its decisions do to the stored traces."""

    def __init__(self, config: SamplingConfig, *, decided_cache_size: int = DECIDED_CACHE_SIZE) -> None:
        self.config = config
        # as many decisions as the sampler remembers (the policy file's decision_cache may ask for more)
        self.decided_cache_size = remembered_decisions(config, decided_cache_size)
        self.sampler = TailSampler(config, decided_cache_size=decided_cache_size)

    def admit(
        self, conn: sqlite3.Connection, spans: DecodedSpans, resource_ids: Sequence[int], now: float, wall_s: float
    ) -> int:
        """Offer the spans to the sampler and store those it does not already reject (inside the
        caller's transaction). Returns the number of spans written."""
        admitted = self.offer(spans, now)
        return 0 if admitted is None else self.store(conn, admitted, resource_ids, wall_s)

    def offer(self, spans: DecodedSpans, now: float) -> AdmittedSpans | None:
        """Offer the spans to the sampler; the ones it does not already reject, for :meth:`store`
        (None when there are none)."""
        decided = self.sampler.offer(spans.facts, now)
        traces = spans.traces
        rejected = {t for t, d in decided.items() if d is not Decision.SAMPLED}
        if rejected:  # late spans of traces dropped already
            values = span_values([row for row in spans.rows if row[0] not in rejected])
            traces = {t: delta for t, delta in traces.items() if t not in rejected}
        else:
            values = spans.values
        if not values:
            return None
        sampling = {t: KEPT if decided.get(t) is Decision.SAMPLED else PENDING for t in traces}
        return AdmittedSpans(values, traces, sampling)

    @staticmethod
    def store(conn: sqlite3.Connection, spans: AdmittedSpans, resource_ids: Sequence[int], wall_s: float) -> int:
        """Write admitted spans (inside the caller's transaction); returns the number written."""
        return insert_spans(conn, None, spans.traces, resource_ids, spans.sampling, wall_s, values=spans.values)

    def settle(self, conn: sqlite3.Connection, now: float) -> list[tuple[str, Decision]]:
        """Decide every trace whose wait is over, and apply the decisions to what is stored."""
        due = self.due(now)
        self.apply(conn, due)
        return due

    def due(self, now: float) -> list[tuple[str, Decision]]:
        """Decide every trace whose wait is over (for :meth:`apply`)."""
        return self.sampler.due(now)

    def apply(self, conn: sqlite3.Connection, decisions: Sequence[tuple[str, Decision]]) -> None:
        """Keep or delete the stored traces that were decided."""
        if decisions:
            self._apply(conn, decisions)

    def _apply(self, conn: sqlite3.Connection, decisions: Sequence[tuple[str, Decision]]) -> None:
        kept = [trace_id for trace_id, d in decisions if d is Decision.SAMPLED]
        gone = [trace_id for trace_id, d in decisions if d is not Decision.SAMPLED]
        with Transaction(conn):
            mark_kept(conn, kept)
            delete_traces(conn, gone)
            record_decisions(conn, [(trace_id, d.value) for trace_id, d in decisions])

    def restore(self, conn: sqlite3.Connection, now: float, wall_s: float) -> int:
        """After a restart: remember recent decisions and offer the pending traces again, each as if
        it had arrived when it first did. Returns the number of pending traces restored."""
        recent = conn.execute(
            "SELECT trace_id, decision FROM decisions ORDER BY rowid DESC LIMIT ?", (self.decided_cache_size,)
        ).fetchall()
        for trace_id, decision in reversed(recent):
            self.sampler.remember(trace_id, Decision(decision))
        pending = conn.execute(
            f"SELECT trace_id, arrival_s FROM traces WHERE sampling = '{PENDING}' ORDER BY arrival_s"
        ).fetchall()
        already: list[tuple[str, Decision]] = []
        for trace_id, arrival_s in pending:
            waited = max(0.0, wall_s - arrival_s)
            decided = self.sampler.offer(_stored_facts(conn, trace_id), now - waited)
            if trace_id in decided:
                already.append((trace_id, decided[trace_id]))
        if already:  # decided before the restart, but the decision never reached the rows
            self._apply(conn, already)
        return len(pending)

    def status(self) -> dict[str, object]:
        return {
            "kept": self.sampler.kept,
            "dropped": self.sampler.dropped,
            "pending": self.sampler.pending,
            "decision_wait_s": self.config.decision_wait_s,
            "policies": [getattr(p, "name", type(p).__name__) for p in self.config.policies],
        }


def _stored_facts(conn: sqlite3.Connection, trace_id: str) -> list[PackedFacts]:
    """The packed facts of a stored trace's spans, as the decoder gives them (attributes and resource
    as their stored JSON text)."""
    rows = conn.execute(
        "SELECT s.service, s.name, s.kind, s.status_code, s.start_ns, s.end_ns, s.attributes, r.attributes"
        " FROM spans s LEFT JOIN resources r ON r.id = s.resource_id WHERE s.trace_id = ?",
        (trace_id,),
    ).fetchall()
    return [
        (trace_id, service, name, KINDS[kind], STATUS_CODES[code], start, end, attrs, resource or "{}")
        for service, name, kind, code, start, end, attrs, resource in rows
    ]
