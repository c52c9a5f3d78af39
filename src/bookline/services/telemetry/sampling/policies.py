"""The tail-sampling policy types, each voting on a whole trace the way the Collector's does.

Semantics follow ``processor/tailsamplingprocessor/internal/sampling/*.go`` of
opentelemetry-collector-contrib:

- attribute policies (string, boolean, numeric) match when the key is on the resource OR on a span,
  of any span of the trace; a value of another type reads as the Go zero value (``""``, ``false``,
  ``0``), as ``pcommon.Value.Str()/Bool()/Int()`` do, and an empty string on a span never matches;
- with ``invert_match`` they vote INVERT_NOT_SAMPLED when anything matches and INVERT_SAMPLED
  otherwise (the deprecated "inverted" decisions, combined specially in :func:`combine_votes`);
- ``latency`` widens [earliest start, latest end] span by span in arrival order and samples as soon
  as the window is at least ``threshold_ms`` (or within (threshold_ms, upper_threshold_ms]);
- ``and`` samples when no sub-policy says not-sampled; ``drop`` votes DROPPED under the same rule.
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bookline.services.telemetry.sampling import hashing
from bookline.services.telemetry.sampling.facts import SpanFacts, Vote

# the Collector's default size of a string_attribute regex-result cache
DEFAULT_REGEX_CACHE_SIZE = 128
_NOT = (Vote.NOT_SAMPLED, Vote.INVERT_NOT_SAMPLED)


class Policy(ABC):
    """One named policy of a ``tail_sampling`` block."""

    type: ClassVar[str]
    name: str

    @abstractmethod
    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        """This policy's vote on the trace made of ``spans`` (in arrival order)."""


@dataclass(frozen=True)
class AlwaysSample(Policy):
    type: ClassVar[str] = "always_sample"
    name: str

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        return Vote.SAMPLED


@dataclass(frozen=True)
class StatusCode(Policy):
    """Samples a trace with at least one span whose status is one of ``status_codes``."""

    type: ClassVar[str] = "status_code"
    name: str
    status_codes: frozenset[str]

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        codes = self.status_codes
        return Vote.SAMPLED if any(s.status_code in codes for s in spans) else Vote.NOT_SAMPLED


@dataclass(frozen=True)
class Latency(Policy):
    """Samples a trace lasting at least ``threshold_ms`` (or in (threshold, upper] when an upper
    bound is set), the duration being the latest end minus the earliest start."""

    type: ClassVar[str] = "latency"
    name: str
    threshold_ms: int
    upper_threshold_ms: int = 0

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        lower, upper = self.threshold_ms, self.upper_threshold_ms
        earliest = latest = 0
        # the Collector re-checks after each span, so with an upper bound a window that passed
        # through (lower, upper] on the way samples the trace even if the whole trace is longer
        for span in spans:
            if earliest == 0 or span.start_unix_nano < earliest:
                earliest = span.start_unix_nano
            if latest == 0 or span.end_unix_nano > latest:
                latest = span.end_unix_nano
            ms = _go_milliseconds(latest - earliest)
            if (ms >= lower) if upper == 0 else (lower < ms <= upper):
                return Vote.SAMPLED
        return Vote.NOT_SAMPLED


@dataclass(frozen=True)
class StringAttribute(Policy):
    """Samples a trace carrying ``key`` with one of ``values`` (exact, or regular expressions
    searched anywhere in the value, as Go's ``MatchString`` does, when ``enabled_regex_matching``)."""

    type: ClassVar[str] = "string_attribute"
    name: str
    key: str
    values: tuple[str, ...]
    enabled_regex_matching: bool = False
    cache_max_size: int = 0
    invert_match: bool = False
    _matches: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.enabled_regex_matching:
            patterns = tuple(re.compile(v) for v in self.values)  # re.error is reported by the parser
            size = self.cache_max_size if self.cache_max_size > 0 else DEFAULT_REGEX_CACHE_SIZE

            @functools.lru_cache(maxsize=size)
            def matches(value: str) -> bool:
                return any(p.search(value) for p in patterns)

        else:
            exact = frozenset(v for v in self.values if v)  # the Collector ignores empty values
            matches = exact.__contains__
        object.__setattr__(self, "_matches", matches)

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        matches = self._matches
        found = _trace_has(
            spans,
            self.key,
            on_resource=lambda v: matches(v if isinstance(v, str) else ""),
            on_span=lambda v: isinstance(v, str) and v != "" and matches(v),
        )
        return _vote(found, self.invert_match)


@dataclass(frozen=True)
class BooleanAttribute(Policy):
    type: ClassVar[str] = "boolean_attribute"
    name: str
    key: str
    value: bool
    invert_match: bool = False

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        wanted = self.value

        def same(v: Any) -> bool:
            return (v if isinstance(v, bool) else False) == wanted

        return _vote(_trace_has(spans, self.key, on_resource=same, on_span=same), self.invert_match)


@dataclass(frozen=True)
class NumericAttribute(Policy):
    """Samples a trace carrying ``key`` with an integer value in [min_value, max_value]; an absent
    bound is open. Like the Collector, a float attribute reads as 0."""

    type: ClassVar[str] = "numeric_attribute"
    name: str
    key: str
    min_value: int | None = None
    max_value: int | None = None
    invert_match: bool = False

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        low = self.min_value if self.min_value is not None else -(2**63)
        high = self.max_value if self.max_value is not None else 2**63 - 1

        def in_range(v: Any) -> bool:
            number = v if isinstance(v, int) and not isinstance(v, bool) else 0
            return low <= number <= high

        return _vote(_trace_has(spans, self.key, on_resource=in_range, on_span=in_range), self.invert_match)


@dataclass(frozen=True)
class Probabilistic(Policy):
    """Samples ``sampling_percentage`` % of traces by hashing the trace id like the Collector."""

    type: ClassVar[str] = "probabilistic"
    name: str
    sampling_percentage: float
    hash_salt: str = ""
    _state: int = field(init=False, repr=False, compare=False)
    _threshold: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_state", hashing.salt_state(self.hash_salt))
        object.__setattr__(self, "_threshold", hashing.threshold_for(self.sampling_percentage))

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        sampled = hashing.hash_trace_id(self._state, trace_id) <= self._threshold
        return Vote.SAMPLED if sampled else Vote.NOT_SAMPLED


@dataclass(frozen=True)
class And(Policy):
    """Samples when every sub-policy samples (an inverted "sampled" counts as sampling)."""

    type: ClassVar[str] = "and"
    name: str
    sub_policies: tuple[Policy, ...]

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        for sub in self.sub_policies:
            if sub.evaluate(trace_id, spans) in _NOT:
                return Vote.NOT_SAMPLED
        return Vote.SAMPLED


@dataclass(frozen=True)
class Drop(Policy):
    """Votes DROPPED, which overrides every other vote, when every sub-policy samples."""

    type: ClassVar[str] = "drop"
    name: str
    sub_policies: tuple[Policy, ...]

    def evaluate(self, trace_id: str, spans: Sequence[SpanFacts]) -> Vote:
        for sub in self.sub_policies:
            if sub.evaluate(trace_id, spans) in _NOT:
                return Vote.NOT_SAMPLED
        return Vote.DROPPED


def _trace_has(
    spans: Sequence[SpanFacts],
    key: str,
    *,
    on_resource: Callable[[Any], bool],
    on_span: Callable[[Any], bool],
) -> bool:
    """Whether the resource or the attributes of any span have ``key`` with a matching value."""
    checked_resources: set[int] = set()
    for span in spans:
        resource = span.resource
        # spans of one export batch share their resource mapping: look at it once
        if id(resource) not in checked_resources:
            checked_resources.add(id(resource))
            if key in resource and on_resource(resource[key]):
                return True
        attributes = span.attributes
        if key in attributes and on_span(attributes[key]):
            return True
    return False


def _vote(found: bool, invert_match: bool) -> Vote:
    if invert_match:
        return Vote.INVERT_NOT_SAMPLED if found else Vote.INVERT_SAMPLED
    return Vote.SAMPLED if found else Vote.NOT_SAMPLED


def _go_milliseconds(nanos: int) -> int:
    """Go's ``Duration.Milliseconds()``: integer division truncating toward zero."""
    return nanos // 1_000_000 if nanos >= 0 else -(-nanos // 1_000_000)
