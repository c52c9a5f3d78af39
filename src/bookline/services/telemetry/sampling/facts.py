"""What the tail sampler sees of a span, and the decisions it can reach.

Policies look only at :class:`SpanFacts`, so the sampler needs neither protobuf nor the database.
While a trace waits for its decision, the sampler holds each of its spans as :data:`PackedFacts`
(see there why) and builds the :class:`SpanFacts` when it decides the trace.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple


class SpanFacts(NamedTuple):
    """The parts of one span a sampling policy may look at.

    A named tuple rather than a dataclass: one is built for every span of every trace decided, tens
    of thousands a second under load, and a tuple is built several times faster.
    """

    trace_id: str  # 32 lowercase hex
    service: str  # resource service.name
    name: str
    kind: str  # "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER"
    status_code: str  # "UNSET" | "OK" | "ERROR"
    start_unix_nano: int
    end_unix_nano: int
    attributes: Mapping[str, Any]  # span attributes (str, bool, int, float, or lists of them)
    resource: Mapping[str, Any]  # resource attributes


# A span's facts as the sampler holds them until its trace is decided: a plain tuple in SpanFacts
# field order whose attributes and resource may still be their compact JSON text (as stored in the
# span's row and in the resources table).
# Why not SpanFacts: a trace waits decision_wait (10 s by default), so under load a few hundred
# thousand spans wait at once. Python's cycle collector walks every object it tracks, and a SpanFacts
# (a tuple subclass), a mapping object, or a tuple holding a dict stays tracked for as long as it
# lives: in bench/telemetry.py, full collections over that buffer took a seventh of the store's
# main process time, holding its GIL. A plain tuple of strings and numbers is untracked by the first
# collection it survives, and the JSON text costs no memory beyond the row's. A SpanFacts is a valid
# PackedFacts too (tests).
PackedFacts = tuple[str, str, str, str, str, int, int, str | Mapping[str, Any], str | Mapping[str, Any]]


_new_tuple = tuple.__new__


def unpack(span: SpanFacts | PackedFacts, resources: dict[str, Mapping[str, Any]] | None = None) -> SpanFacts:
    """The SpanFacts of a held span. Attributes given as JSON text are parsed when first read; a
    resource given as JSON text is parsed once per ``resources`` (text to mapping), which the caller
    shares between the spans it unpacks together, so that they share their resource mapping."""
    if type(span) is SpanFacts:
        return span
    attributes, resource = span[7], span[8]
    if type(attributes) is str:
        attributes = JsonAttributes(attributes)
    if type(resource) is str:
        if resources is None:
            resources = {}
        parsed = resources.get(resource)
        if parsed is None:
            parsed = resources[resource] = json.loads(resource)
        resource = parsed
    # tuple.__new__ skips the named tuple's Python-level __new__: half the cost, for every span decided
    return _new_tuple(SpanFacts, (span[0], span[1], span[2], span[3], span[4], span[5], span[6], attributes, resource))


@functools.lru_cache(maxsize=256)
def _key_needle(key: str) -> str | None:
    """What the JSON text of an object holding ``key`` always contains: the key in quotes, then the
    colon (every JSON encoder writes a plain key alike and puts the colon straight after it). None
    for a key some encoder might escape (non-ASCII, quotes, backslashes, control characters)."""
    if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return f'"{key}":'
    return None


class JsonAttributes(Mapping[str, Any]):
    """A span's attributes, parsed from their stored JSON the first time they are read (a policy
    file that reads no attributes never pays for parsing them). Whether a key is there is first
    asked of the text: most policies look for a key most spans do not have, and a span without it
    is then never parsed."""

    __slots__ = ("_text", "_parsed")

    def __init__(self, text: str) -> None:
        self._text = text
        self._parsed: dict[str, Any] | None = None

    def _attributes(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = json.loads(self._text)
        return self._parsed

    def __getitem__(self, key: str) -> Any:
        return self._attributes()[key]

    def _surely_absent(self, key: object) -> bool:
        if self._parsed is not None or type(key) is not str:
            return False
        needle = _key_needle(key)
        return needle is not None and needle not in self._text

    def get(self, key: str, default: Any = None) -> Any:
        if self._surely_absent(key):
            return default
        return self._attributes().get(key, default)

    def __contains__(self, key: object) -> bool:
        return not self._surely_absent(key) and key in self._attributes()

    def __iter__(self) -> Iterator[str]:
        return iter(self._attributes())

    def __len__(self) -> int:
        return len(self._attributes())

    def __repr__(self) -> str:
        return f"JsonAttributes({self._text})"


class Decision(enum.Enum):
    """The final decision on a whole trace."""

    SAMPLED = "sampled"
    NOT_SAMPLED = "not_sampled"
    DROPPED = "dropped"


class Vote(enum.Enum):
    """What one policy says about a trace, before the votes are combined (the Collector's
    ``samplingpolicy.Decision`` values that a policy can return)."""

    SAMPLED = "sampled"
    NOT_SAMPLED = "not_sampled"
    # invert_match policies vote these; they combine differently from the plain ones
    INVERT_SAMPLED = "invert_sampled"
    INVERT_NOT_SAMPLED = "invert_not_sampled"
    DROPPED = "dropped"
