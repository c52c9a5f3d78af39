"""Small queries over finished spans, for asserting trace trees."""

from __future__ import annotations

from typing import Any


def service_of(span: Any) -> str:
    return span.resource.attributes["service.name"]


def by_name(spans: list[Any], name: str) -> list[Any]:
    return [s for s in spans if s.name == name]


def one(spans: list[Any], name: str) -> Any:
    found = by_name(spans, name)
    assert len(found) == 1, f"expected one {name!r}, found {len(found)}: {sorted({s.name for s in spans})}"
    return found[0]


def children(spans: list[Any], parent: Any) -> list[Any]:
    """Direct children of a span, in start order."""
    kids = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return sorted(kids, key=lambda s: s.start_time)


def ours(spans: list[Any]) -> list[Any]:
    """The spans Bookline's own code made (not the HTTP and database instrumentations)."""
    return [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == "bookline"]


def transactions(spans: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Every database transaction, in order: the name of the span it ran under and its statements.
    A read transaction would show as ``("read", ...)`` besides them."""
    finished = spans.get_finished_spans()
    names = {s.context.span_id: s.name for s in finished}
    return [
        (
            "read" if s.attributes.get("db.transaction.read_only") else names.get(s.parent.span_id, "?"),
            s.attributes["db.transaction.operations"],
        )
        for s in finished
        if s.instrumentation_scope.name == "bookline.db"
    ]
