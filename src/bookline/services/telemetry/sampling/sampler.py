"""Deciding whole traces: the Collector's vote combination, and the buffer that waits for a trace.

:func:`decide` combines the policies' votes as the Collector's ``tailSamplingSpanProcessor.
makeDecision`` does: any DROPPED wins; then any inverted not-sampled means NOT_SAMPLED; then any
SAMPLED means SAMPLED; then an inverted sampled counts only when no policy said NOT_SAMPLED.

:class:`TailSampler` is clock-free: the caller passes a monotonic ``now`` to :meth:`~TailSampler.offer`
and :meth:`~TailSampler.due`, so tests drive time by hand and the store drives it from its loop.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import count
from typing import TYPE_CHECKING, Any

from bookline.services.telemetry.sampling.facts import Decision, PackedFacts, SpanFacts, Vote, unpack

if TYPE_CHECKING:
    from bookline.services.telemetry.sampling.config import SamplingConfig


def decide(config: SamplingConfig, spans: Sequence[SpanFacts], trace_id: str | None = None) -> Decision:
    """The decision on the trace made of ``spans`` (all of one trace id, in arrival order; the caller
    may name it, so that a policy that reads no span never makes ``spans`` unpack one)."""
    if not spans:
        raise ValueError("a sampling decision needs at least one span")
    if trace_id is None:
        trace_id = spans[0].trace_id
    seen: set[Vote] = set()
    for policy in config.policies:
        vote = policy.evaluate(trace_id, spans)
        seen.add(vote)
        # like the Collector: nothing overrides a drop, and sample_on_first_match stops at a sample
        if vote is Vote.DROPPED or (vote is Vote.SAMPLED and config.sample_on_first_match):
            break
    return combine_votes(seen)


def combine_votes(votes: set[Vote]) -> Decision:
    """The Collector's precedence over the votes of all policies."""
    if Vote.DROPPED in votes:
        return Decision.DROPPED
    if Vote.INVERT_NOT_SAMPLED in votes:
        return Decision.NOT_SAMPLED
    if Vote.SAMPLED in votes:
        return Decision.SAMPLED
    if Vote.INVERT_SAMPLED in votes and Vote.NOT_SAMPLED not in votes:
        return Decision.SAMPLED
    return Decision.NOT_SAMPLED


class _Unpacked(Sequence[SpanFacts]):
    """The SpanFacts of a trace's held spans, all unpacked when a policy first reads one: a policy file
    that looks at no span (always_sample, probabilistic) never pays for unpacking them, as one that
    reads no attribute never pays for parsing them (see JsonAttributes)."""

    __slots__ = ("_held", "_resources", "_facts")

    def __init__(self, held: list[SpanFacts | PackedFacts], resources: dict[str, Mapping[str, Any]]) -> None:
        self._held = held
        self._resources = resources
        self._facts: list[SpanFacts] | None = None

    def _unpacked(self) -> list[SpanFacts]:
        if self._facts is None:
            resources = self._resources
            self._facts = [unpack(span, resources) for span in self._held]
        return self._facts

    def __len__(self) -> int:
        return len(self._held)

    def __getitem__(self, index: Any) -> Any:
        return self._unpacked()[index]

    def __iter__(self) -> Iterator[SpanFacts]:
        return iter(self._unpacked())


class TailSampler:
    """Buffers span facts per trace; decides each trace decision_wait_s after its first span arrived;
    remembers decisions so late spans follow them; counts kept and dropped traces.

    Not thread-safe: the store calls it from one event loop.
    """

    def __init__(self, config: SamplingConfig, *, decided_cache_size: int = 100_000) -> None:
        self.config = config
        self.kept = 0
        self.dropped = 0
        self._wait = config.decision_wait_s
        # the spans of each undecided trace, and the number of the wait it is in: a deadline of an
        # earlier wait of the same trace id (decided meanwhile by remember()) is stale. Numbers rather
        # than objects, so that per trace only its span list is an object the cycle collector tracks
        # (a few hundred thousand spans wait under load; see PackedFacts)
        self._pending: dict[str, list[SpanFacts | PackedFacts]] = {}
        self._waits: dict[str, int] = {}
        self._opened = count()
        # (deadline, trace id, wait number) of first arrivals in order; the wait is the same for
        # every trace, so deadlines are sorted too
        self._deadlines: deque[tuple[float, str, int]] = deque()
        self._decided: OrderedDict[str, Decision] = OrderedDict()
        # the policy file's decision_cache may ask for more room than the caller's default
        self._decided_limit = max(1, decided_cache_size, config.sampled_cache_size + config.non_sampled_cache_size)

    @property
    def pending(self) -> int:
        """Traces buffered and waiting for their decision."""
        return len(self._pending)

    def offer(self, spans: Iterable[SpanFacts | PackedFacts], now: float) -> dict[str, Decision]:
        """Buffer the spans of undecided traces; return the decision of every trace in ``spans`` that
        is already decided, so the caller keeps or drops those late spans right away.

        Spans are held as given until their trace is decided: the store gives :data:`PackedFacts`.
        """
        pending, decided = self._pending, self._decided
        late: dict[str, Decision] = {}
        for span in spans:
            trace_id = span[0]  # SpanFacts.trace_id, also in a packed span
            waiting = pending.get(trace_id)
            if waiting is not None:
                waiting.append(span)
                continue
            if trace_id in late:
                continue
            decision = decided.get(trace_id)
            if decision is not None:
                decided.move_to_end(trace_id)  # a trace still receiving spans stays remembered
                late[trace_id] = decision
                continue
            pending[trace_id] = [span]
            wait = self._waits[trace_id] = next(self._opened)
            self._deadlines.append((now + self._wait, trace_id, wait))
        return late

    def due(self, now: float) -> list[tuple[str, Decision]]:
        """Decide and forget every buffered trace whose wait has elapsed, and the oldest ones beyond
        ``num_traces`` (decided early on the spans they have); return (trace_id, decision) pairs."""
        deadlines, pending, waits = self._deadlines, self._pending, self._waits
        results: list[tuple[str, Decision]] = []
        resources: dict[str, Mapping[str, Any]] = {}  # each resource text parsed once per call
        while deadlines and (deadlines[0][0] <= now or len(pending) > self.config.num_traces):
            _, trace_id, wait = deadlines.popleft()
            if waits.get(trace_id) != wait:
                continue  # decided meanwhile by remember()
            del waits[trace_id]
            decision = decide(self.config, _Unpacked(pending.pop(trace_id), resources), trace_id)
            self._record(trace_id, decision)
            results.append((trace_id, decision))
        return results

    def remember(self, trace_id: str, decision: Decision) -> None:
        """Restore a decision made before a restart (not counted again in kept/dropped); spans of
        that trace buffered meanwhile are forgotten, as the decision already covers them."""
        self._pending.pop(trace_id, None)
        self._waits.pop(trace_id, None)
        self._put(trace_id, decision)

    def _record(self, trace_id: str, decision: Decision) -> None:
        if decision is Decision.SAMPLED:
            self.kept += 1
        else:
            self.dropped += 1
        self._put(trace_id, decision)

    def _put(self, trace_id: str, decision: Decision) -> None:
        decided = self._decided
        decided[trace_id] = decision
        decided.move_to_end(trace_id)
        if len(decided) > self._decided_limit:
            decided.popitem(last=False)
