"""Links from a background trace (recovery, reconciliation) to the booking trace it acts on."""

from __future__ import annotations

from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags


def link_to(trace_parent: str | None) -> list[Link]:
    """A link to the span of a W3C ``traceparent`` stored with a booking (none if it is unusable)."""
    if not trace_parent:
        return []
    try:
        _, trace_id, span_id, flags = trace_parent.split("-")
        ctx = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    except ValueError:
        return []
    return [Link(NonRecordingSpan(ctx).get_span_context())]
