"""What the tail sampler sees of a span, and the decisions it can reach.

The store builds one :class:`SpanFacts` per decoded span; policies look only at these facts, so the
sampler needs neither protobuf nor the database.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SpanFacts:
    """The parts of one span a sampling policy may look at."""

    trace_id: str  # 32 lowercase hex
    service: str  # resource service.name
    name: str
    kind: str  # "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER"
    status_code: str  # "UNSET" | "OK" | "ERROR"
    start_unix_nano: int
    end_unix_nano: int
    attributes: Mapping[str, Any]  # span attributes (str, bool, int, float, or lists of them)
    resource: Mapping[str, Any]  # resource attributes


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
