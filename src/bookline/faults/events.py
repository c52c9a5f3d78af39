"""How a fault shows itself in a trace: the span event ``fault_injected`` with ``fault.name``, the
dotted key of the fault (``gateway.timeout_rate``), on the span of the step it affects. A reader of
the trace then sees why a step failed without reading logs or the fault file."""

from __future__ import annotations

import random

from opentelemetry.trace import Span

FAULT_INJECTED = "fault_injected"


def fire(span: Span, name: str) -> None:
    """Record on ``span`` that the fault ``name`` acted on this step."""
    span.add_event(FAULT_INJECTED, {"fault.name": name})


def strikes(rate: float | None, rng: random.Random) -> bool:
    """Whether a fault set with probability ``rate`` hits this time (never when it is unset or 0)."""
    return bool(rate) and rng.random() < rate  # type: ignore[operator]
