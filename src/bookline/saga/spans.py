"""The saga's spans decide their own status: an exception passing through a step (a decline, a
contention) is often a business outcome, not an error, and is recorded once, on booking.create."""

from __future__ import annotations

from contextlib import AbstractContextManager

from opentelemetry.trace import Span, SpanKind, Tracer


def step_span(tracer: Tracer, name: str, kind: SpanKind = SpanKind.INTERNAL, **kwargs) -> AbstractContextManager[Span]:
    return tracer.start_as_current_span(
        name, kind=kind, record_exception=False, set_status_on_exception=False, **kwargs
    )
