"""``bookline traces``: read the local telemetry store from a terminal.

``list`` searches traces (the filters of ``GET /api/traces``), ``show TRACE_ID`` draws one trace as a
waterfall (an indented span tree with service, a duration bar scaled to the trace, status, the key
booking and payment attributes, and each span's events), ``last`` draws the newest trace. Everything
comes from the store's HTTP API, so this works against any running store (``--url``).
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bookline.config import Settings

traces_app = typer.Typer(
    no_args_is_help=True,
    help="Traces in the local telemetry store: search them, draw one as a waterfall.",
    pretty_exceptions_show_locals=False,
)

KEY_ATTRIBUTES = (
    "booking.outcome",
    "booking.reservation_id",
    "booking.confirmation_code",
    "payment.status",
    "payment.transaction_id",
    "booking.lock_acquired",
    "booking.rollback.reason",
    "http.response.status_code",
)
STATUS_STYLES = {"ERROR": "bold red", "OK": "green", "UNSET": "dim"}

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="the telemetry store's base URL", show_default="from the settings (:4318)"),
]


def _console() -> Console:
    return Console(highlight=False)


class StoreError(Exception):
    """The store could not answer what was asked (not running, an error answer)."""


def _get(url: str, path: str, params: Any = None) -> Any:
    base = url.rstrip("/")
    try:
        response = httpx.get(f"{base}{path}", params=params, timeout=10)
    except httpx.ConnectError:
        raise StoreError(
            f"nothing answers at {base}: is the telemetry store running? "
            "Start the stack with `bookline up` (or the store alone with `bookline serve telemetry`)."
        ) from None
    except httpx.HTTPError as exc:
        raise StoreError(f"GET {base}{path} failed: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_error:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if error.get("code") == "trace_not_found":
            raise StoreError(
                f"{error.get('message')}: it may not have arrived yet (exports are batched for up to 5 s), "
                "or tail sampling dropped it"
            )
        raise StoreError(f"the store answered {response.status_code}: {error.get('message', response.reason_phrase)}")
    return body


def _url(url: str | None) -> str:
    return url or Settings().url_of("telemetry")


def _fail(console: Console, exc: StoreError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(exc))}")
    return typer.Exit(1)


def _duration(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 10:
        return f"{ms:.0f} ms"
    return f"{ms:.1f} ms"


# ---- list -----------------------------------------------------------------------------------------


@traces_app.command("list")
def list_traces(
    url: UrlOption = None,
    service: Annotated[str | None, typer.Option(help="a span of this service")] = None,
    name: Annotated[str | None, typer.Option(help="a span of this name")] = None,
    status: Annotated[str | None, typer.Option(help="a span with this status: ok, error or unset")] = None,
    outcome: Annotated[str | None, typer.Option(help="booking.outcome (confirmed, declined, ...)")] = None,
    min_ms: Annotated[float | None, typer.Option("--min-ms", help="whole trace at least this long")] = None,
    max_ms: Annotated[float | None, typer.Option("--max-ms", help="whole trace at most this long")] = None,
    since: Annotated[str | None, typer.Option(help="started at or after (ISO 8601 or unix ms)")] = None,
    until: Annotated[str | None, typer.Option(help="started at or before (ISO 8601 or unix ms)")] = None,
    attr: Annotated[list[str] | None, typer.Option(help="KEY=VALUE: a span attribute (repeatable)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many traces")] = 20,
) -> None:
    """Search traces, newest first."""
    console = _console()
    params: list[tuple[str, str]] = [
        (key, str(value))
        for key, value in (
            ("service", service),
            ("name", name),
            ("status", status),
            ("outcome", outcome),
            ("min_duration_ms", min_ms),
            ("max_duration_ms", max_ms),
            ("since", since),
            ("until", until),
            ("limit", limit),
        )
        if value is not None
    ]
    for item in attr or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            console.print(f"[bold red]error:[/] --attr wants KEY=VALUE, not {escape(item)!r}")
            raise typer.Exit(2)
        params.append((f"attr.{key}", value))
    try:
        traces = _get(_url(url), "/api/traces", params)["traces"]
    except StoreError as exc:
        raise _fail(console, exc) from None
    if not traces:
        console.print("no trace matches")
        return
    pending = any(t.get("sampling") == "pending" for t in traces)
    table = Table(
        title=f"{len(traces)} traces, newest first",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        caption="* still waiting for the tail-sampling decision" if pending else None,
        caption_justify="left",
    )
    table.add_column("trace id", no_wrap=True)
    table.add_column("start UTC", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("root span (service)")
    table.add_column("svc", justify="right", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    for t in traces:
        state = t.get("booking_outcome") or ("error" if t["error"] else "ok")
        style = "red" if t["error"] or state not in ("confirmed", "ok") else "green"
        table.add_row(
            t["trace_id"],
            t["start_time"][11:19],
            _duration(t["duration_ms"]),
            escape(f"{t['root_name']} ({t['root_service']})"),
            str(len(t["services"])),
            Text(state + ("*" if t.get("sampling") == "pending" else ""), style=style),
        )
    console.print(table)


# ---- show / last ----------------------------------------------------------------------------------


def _tree(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Spans in waterfall order with their depth; a span whose parent is missing starts a new root."""
    ids = {s["span_id"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parent_span_id"] if span["parent_span_id"] in ids else None
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[int, dict[str, Any]]] = []
    stack = [(0, s) for s in reversed(children.get(None, []))]
    while stack:
        depth, span = stack.pop()
        ordered.append((depth, span))
        stack.extend((depth + 1, child) for child in reversed(children.get(span["span_id"], [])))
    return ordered


def _bar(offset: float, length: float, width: int, style: str) -> Text:
    start = min(width - 1, int(offset * width))
    size = max(1, min(width - start, round(length * width)))
    return Text(" " * start + "█" * size + " " * (width - start - size), style=style)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def render_waterfall(trace: dict[str, Any], console: Console) -> None:
    """Draw a trace (the ``GET /api/traces/{id}`` document) as a waterfall on ``console``."""
    spans = trace["spans"]
    if not spans:
        console.print(f"trace {trace['trace_id']} has no spans")
        return
    start = min(s["start_unix_nano"] for s in spans)
    end = max(s["end_unix_nano"] for s in spans)
    total = max(end - start, 1)
    width = max(80, min(console.width, 160))
    service_w, bar_w, duration_w, status_w = 21, max(16, width // 5), 9, 5
    name_w = width - service_w - bar_w - duration_w - status_w - 4
    services = sorted({s["service"] for s in spans})
    console.print(
        Text.assemble(
            ("trace ", "bold"), (trace["trace_id"], "bold cyan"), (f"  {trace.get('sampling', 'kept')}", "dim")
        )
    )
    console.print(
        f"{spans[0]['start_time'][:23].replace('T', ' ')} UTC  {_duration(total / 1e6)}  {len(spans)} spans  "
        f"{len(services)} services: {', '.join(services)}",
        overflow="fold",
        markup=False,
    )
    for depth, span in _tree(spans):
        indent = "  " * min(depth, 12)
        status = span["status"]["code"]
        style = STATUS_STYLES.get(status, "")
        line = Text()
        line.append(_clip(indent + span["name"], name_w).ljust(name_w), style="bold" if depth == 0 else "")
        line.append(" " + _clip(span["service"], service_w).ljust(service_w), style="cyan")
        line.append(" ")
        line.append_text(
            _bar(
                (span["start_unix_nano"] - start) / total,
                (span["end_unix_nano"] - span["start_unix_nano"]) / total,
                bar_w,
                "red" if status == "ERROR" else "blue",
            )
        )
        line.append(" " + _duration(span["duration_ms"]).rjust(duration_w))
        line.append(" " + (status if status != "UNSET" else "").ljust(status_w), style=style)
        console.print(line, no_wrap=True, overflow="ellipsis")
        detail = indent + "    "
        keys = [f"{k}={_value(span['attributes'][k])}" for k in KEY_ATTRIBUTES if k in span["attributes"]]
        if keys:
            console.print(Text(detail + "  ".join(keys), style="dim"), overflow="fold")
        if status == "ERROR" and span["status"].get("message"):
            console.print(Text(f"{detail}! {span['status']['message']}", style="red"), overflow="fold")
        for event in span.get("events", []):
            at = (event["time_unix_nano"] - span["start_unix_nano"]) / 1e6
            attrs = "  ".join(f"{k}={_value(v)}" for k, v in event.get("attributes", {}).items())
            console.print(
                Text.assemble((f"{detail}◆ {event['name']}", "yellow"), f" +{_duration(at)}  ", (attrs, "dim")),
                overflow="fold",
            )


@traces_app.command()
def show(
    trace_id: Annotated[str, typer.Argument(help="the trace id (32 hex), e.g. a booking's trace_id")],
    url: UrlOption = None,
) -> None:
    """Draw one trace as a waterfall."""
    console = _console()
    try:
        trace = _get(_url(url), f"/api/traces/{trace_id.strip().lower()}")
    except StoreError as exc:
        raise _fail(console, exc) from None
    render_waterfall(trace, console)


@traces_app.command()
def last(
    url: UrlOption = None,
    outcome: Annotated[str | None, typer.Option(help="the newest with this booking.outcome")] = None,
    service: Annotated[str | None, typer.Option(help="the newest with a span of this service")] = None,
) -> None:
    """Draw the newest trace as a waterfall."""
    console = _console()
    params = {k: v for k, v in (("outcome", outcome), ("service", service), ("limit", "1")) if v is not None}
    base = _url(url)
    try:
        found = _get(base, "/api/traces", params)["traces"]
        if not found:
            console.print("no trace matches" if outcome or service else "the store holds no trace yet")
            raise typer.Exit(1)
        trace = _get(base, f"/api/traces/{found[0]['trace_id']}")
    except StoreError as exc:
        raise _fail(console, exc) from None
    render_waterfall(trace, console)
