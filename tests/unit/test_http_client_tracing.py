"""The lean aiohttp client tracing (bookline.http_client_tracing) emits what the contrib
``create_trace_config`` emits with Bookline's settings: the same requests, over real HTTP, to the same
local server, made by a session traced either way, give the same spans (names, kinds, parents, status,
attributes, events), the same sampler input, the same current span along the request, the same
``traceparent``/``baggage`` seen by the server, and the same ``http.client.request.duration`` points.

Nothing is excluded from the comparison but what cannot be equal: span ids and timestamps (spans and
ids are compared by position), exception stack traces, and the instrumentation scope's name and
version (the schema URL is compared). Every request goes to the same server and port (or the same
closed port), so no attribute differs per connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import baggage, trace
from opentelemetry import context as context_api
from opentelemetry.instrumentation._semconv import _set_http_method, _StabilityMode
from opentelemetry.instrumentation.aiohttp_client import _get_span_name, create_trace_config
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags
from opentelemetry.util.http import redact_url, sanitize_method

from bookline import http_client_tracing
from bookline.telemetry import _HttpDurationsMeterProvider
from support.serving import fake_peer

# (method, URL template, keyword arguments of session.request); {base} is the server, {port} its port,
# {closed} a port nobody listens on
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "{base}/ok", {}),
    ("POST", "{base}/created", {"json": {"room": 7}}),
    ("GET", "{base}/missing", {}),
    ("PUT", "{base}/conflict", {"data": b"x"}),
    ("DELETE", "{base}/fail", {}),
    ("GET", "{base}/slow", {"timeout": aiohttp.ClientTimeout(total=0.1)}),
    ("GET", "{base}/redirect", {}),
    ("PURGE", "{base}/ok", {}),  # a method outside RFC 9110
    ("GET", "http://user:secret@127.0.0.1:{port}/ok?sig=abc&Signature=x&AWSAccessKeyId=k&plain=1&empty=", {}),
    ("GET", "{base}/ok?X-Goog-Signature=zz&expand=rooms&note=a%20b", {}),
    ("GET", "{base}/ok?expand=rooms&note=a%20b", {}),  # a "%": parsed, nothing redacted
    ("PATCH", "{base}/ok?%73ig=secret&designation=x", {}),  # a percent-encoded "sig"
    ("GET", "{base}/ok?page=2#section", {}),
    ("GET", "http://localhost:{port}/ok", {}),
    ("GET", "http://LocalHost:{port}/ok", {}),
    ("GET", "{base}/missing?raise=1", {"raise_for_status": True}),  # the exception after the response
    ("HEAD", "{base}/ok", {}),
    ("OPTIONS", "{base}", {}),
    ("GET", "http://127.0.0.1:{closed}/ok", {}),  # connection refused
]


class RecordingSampler(Sampler):
    """ParentBased(ALWAYS_ON), remembering what it was asked: what the sampler of a service sees."""

    def __init__(self) -> None:
        self.inner = ParentBased(ALWAYS_ON)
        self.seen: list[tuple[str, Any, dict[str, Any]]] = []

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None) -> SamplingResult:  # noqa: ANN001
        self.seen.append((name, kind, dict(attributes or {})))
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return "recording"


class Side:
    """One trace config (contrib or lean), its providers and what they recorded."""

    def __init__(self, lean: bool) -> None:
        self.exporter = InMemorySpanExporter()
        self.sampler = RecordingSampler()
        self.tracer_provider = TracerProvider(sampler=self.sampler)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        if lean:
            self.config = http_client_tracing.trace_config(
                tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
            )
        else:  # as bookline.telemetry.ServiceTelemetry.http_client_trace_config makes it
            self.config = create_trace_config(
                tracer_provider=self.tracer_provider,
                meter_provider=_HttpDurationsMeterProvider(self.meter_provider),
                sem_conv_opt_in_mode=_StabilityMode.HTTP,
            )
        self.tracer = self.tracer_provider.get_tracer("test")
        # the current span as another trace config (after this one) sees it along a request
        self.probe: list[tuple[str, trace.SpanContext]] = []
        # span ids of the parents and of the exported CLIENT spans, for the exemplars
        self.span_labels: dict[int, str] = {}

    def probe_config(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()
        for event in ("request_start", "request_headers_sent", "request_end", "request_exception"):

            async def hook(_session: Any, _ctx: Any, _params: Any, event: str = event) -> None:
                self.probe.append((event, trace.get_current_span().get_span_context()))

            getattr(config, f"on_{event}").append(hook)
        return config

    def metrics(self) -> list[Any]:
        data = self.reader.get_metrics_data()
        return [
            (sm.scope, m)
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
        ]


class Server:
    """A local aiohttp server answering by path, remembering the propagation headers it is sent."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str | None]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.path, request.headers.get("traceparent"), request.headers.get("baggage")))
        path = request.path
        if path == "/created":
            return web.json_response({"id": "r-1", "body": await request.json()}, status=201)
        if path == "/missing":
            return web.json_response({"error": {"code": "not_found"}}, status=404)
        if path == "/conflict":
            return web.json_response({"error": {"code": "conflict"}}, status=409)
        if path == "/fail":
            return web.Response(status=500, text="boom")
        if path == "/slow":
            await asyncio.sleep(0.5)
            return web.Response(text="late")
        if path == "/redirect":
            raise web.HTTPFound("/ok")
        return web.Response(text="ok")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLOSED_PORT = _closed_port()  # the same for both sides of a comparison


class Labels:
    """Span ids by position: the parent's, then the exported spans', then any other in the order met,
    so that two runs with different ids compare equal."""

    def __init__(self, parent: trace.SpanContext, spans: list[Any]) -> None:
        self.parent = parent
        self.names: dict[int, str] = {parent.span_id: "parent"}
        for i, span in enumerate(spans):
            self.names[span.context.span_id] = f"span{i}"

    def __call__(self, span_id: int) -> str:
        if span_id == 0:
            return "invalid"
        return self.names.setdefault(span_id, f"other{len(self.names)}")

    def context(self, ctx: trace.SpanContext) -> tuple[str, bool, int] | str:
        """(which span, in the parent's trace, trace flags)"""
        if not ctx.is_valid:
            return "invalid"
        return (self(ctx.span_id), ctx.trace_id == self.parent.trace_id, int(ctx.trace_flags))

    def traceparent(self, header: str | None) -> tuple[str, bool, int, str] | None:
        """(which span, in the parent's trace, trace flags, version) of a traceparent header"""
        if header is None:
            return None
        version, trace_id, span_id, flags = header.split("-")
        return (self(int(span_id, 16)), int(trace_id, 16) == self.parent.trace_id, int(flags, 16), version)


def normalized(spans: list[Any], labels: Labels) -> list[dict[str, Any]]:
    out = []
    for s in spans:
        out.append(
            {
                "name": s.name,
                "kind": s.kind,
                "id": labels(s.context.span_id),
                "parent": labels(s.parent.span_id) if s.parent else None,
                "same_trace": s.context.trace_id == labels.parent.trace_id,
                "sampled": s.context.trace_flags.sampled,
                "schema_url": s.instrumentation_scope.schema_url,
                "status": (s.status.status_code, s.status.description),
                "attributes": dict(s.attributes),
                "events": [
                    (e.name, {k: v for k, v in e.attributes.items() if k != "exception.stacktrace"}) for e in s.events
                ],
            }
        )
    return out


async def run(
    side: Side, server: Server, base: str, requests: list[tuple[str, str, dict[str, Any]]], parent: Any = None
) -> list[dict[str, Any]]:
    """Each request under a parent span (a new one each, or ``parent``, a context to run in)."""
    port, closed = base.rsplit(":", 1)[1], CLOSED_PORT
    results = []
    async with aiohttp.ClientSession(trace_configs=[side.config, side.probe_config()]) as session:
        for method, template, kwargs in requests:
            url = template.format(base=base, port=port, closed=closed)
            side.exporter.clear()
            side.probe.clear()
            server.seen.clear()
            sampled = len(side.sampler.seen)
            token = context_api.attach(baggage.set_baggage("tenant", "acme", parent))
            span = side.tracer.start_span("parent", context=parent) if parent is None else None
            if span is not None:
                token2 = context_api.attach(trace.set_span_in_context(span))
            parent_ctx = trace.get_current_span().get_span_context()
            outcome: Any
            try:
                async with session.request(method, url, **kwargs) as response:
                    outcome = (response.status, len(await response.read()))
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            # the session's span is not current any more: the next request's parent is the same
            assert trace.get_current_span().get_span_context() == parent_ctx
            if span is not None:
                context_api.detach(token2)
                span.end()
            context_api.detach(token)
            spans = [s for s in side.exporter.get_finished_spans() if s.name != "parent"]
            side.span_labels[parent_ctx.span_id] = "parent"
            side.span_labels.update((s.context.span_id, "client") for s in spans)
            labels = Labels(parent_ctx, sorted(spans, key=lambda s: s.start_time))
            results.append(
                {
                    "request": (method, template),
                    "outcome": outcome,
                    "spans": normalized(sorted(spans, key=lambda s: s.start_time), labels),
                    "sampler": [(n, k, a) for n, k, a in side.sampler.seen[sampled:] if n != "parent"],
                    "current": [(event, labels.context(ctx)) for event, ctx in side.probe],
                    "server": [(path, labels.traceparent(tp), bag) for path, tp, bag in server.seen],
                }
            )
    return results


def duration_points(side: Side) -> tuple[set[Any], Counter, set[Any], Counter]:
    names, bounds = set(), set()
    points: Counter = Counter()
    exemplars: Counter = Counter()
    for scope, metric in side.metrics():
        names.add((metric.name, metric.unit, metric.description, scope.schema_url))
        for p in metric.data.data_points:
            points[frozenset(p.attributes.items())] += p.count
            bounds.add(tuple(p.explicit_bounds))
            for e in p.exemplars:
                exemplars[side.span_labels.get(e.span_id, "other")] += 1
    return names, points, bounds, exemplars


async def test_lean_client_tracing_emits_what_the_contrib_emits() -> None:
    contrib, lean = Side(lean=False), Side(lean=True)
    server = Server()
    async with fake_peer(server.handle) as base:
        expected = await run(contrib, server, base, REQUESTS)
        got = await run(lean, server, base, REQUESTS)

    for want, have in zip(expected, got, strict=True):
        assert have == want, want["request"]

    # the cases the comparison is meant to cover are really there
    port = int(base.rsplit(":", 1)[1])
    by_request = {r["request"]: r for r in expected}
    for r in expected:
        [span] = r["spans"]
        assert span["kind"].name == "CLIENT" and span["parent"] == "parent" and span["same_trace"]
        # the span is current along the request, the parent again from its end
        events = [e for e, _ in r["current"]]
        flags = r["current"][0][1][2]
        assert flags & 1  # sampled
        assert r["current"][0] == ("request_start", ("span0", True, flags)), r["request"]
        assert r["current"][-1][1] == ("parent", True, flags) and events[-1] in ("request_end", "request_exception")
        assert all(ctx == ("span0", True, flags) for e, ctx in r["current"] if e == "request_headers_sent")
        # what the server was sent: the CLIENT span's context, and the baggage
        assert all(seen[1:] == (("span0", True, flags, "00"), "tenant=acme") for seen in r["server"]), r["request"]
        # what the sampler saw: the attributes at start
        assert r["sampler"] == [
            (
                span["name"],
                span["kind"],
                {k: v for k, v in span["attributes"].items() if k not in ("http.response.status_code", "error.type")},
            )
        ]

    def span(method: str, template: str) -> dict[str, Any]:
        return by_request[(method, template)]["spans"][0]

    ok = span("GET", "{base}/ok")
    assert ok["name"] == "GET" and ok["status"] == (StatusCode.UNSET, None)
    assert ok["attributes"] == {
        "http.request.method": "GET",
        "url.full": f"{base}/ok",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
    }
    assert span("POST", "{base}/created")["attributes"]["http.response.status_code"] == 201
    for method, path, code in [("GET", "missing", 404), ("PUT", "conflict", 409), ("DELETE", "fail", 500)]:
        failed = span(method, "{base}/" + path)
        assert failed["status"] == (StatusCode.ERROR, None)  # a 4xx is an error for a client span
        assert failed["attributes"]["error.type"] == str(code)
    slow = by_request[("GET", "{base}/slow")]
    assert slow["outcome"] in ("ServerTimeoutError", "SocketTimeoutError", "TimeoutError")
    assert slow["spans"][0]["status"][0] == StatusCode.ERROR
    assert slow["spans"][0]["attributes"]["error.type"] == slow["spans"][0]["status"][1]
    assert [e[0] for e in slow["spans"][0]["events"]] == ["exception"]
    redirect = by_request[("GET", "{base}/redirect")]
    assert [s[0] for s in redirect["server"]] == ["/redirect", "/ok"]
    assert redirect["spans"][0]["attributes"]["url.full"] == f"{base}/redirect"
    assert redirect["spans"][0]["attributes"]["http.response.status_code"] == 200
    purge = span("PURGE", "{base}/ok")
    assert purge["name"] == "HTTP"
    assert purge["attributes"]["http.request.method"] == "_OTHER"
    assert purge["attributes"]["http.request.method_original"] == "PURGE"
    secret = span("GET", REQUESTS[8][1])["attributes"]["url.full"]
    assert secret.startswith(f"http://REDACTED:REDACTED@127.0.0.1:{port}/ok?") and "secret" not in secret
    assert "sig=REDACTED" in secret and "Signature=REDACTED" in secret and "AWSAccessKeyId=REDACTED" in secret
    assert "X-Goog-Signature=REDACTED" in span("GET", REQUESTS[9][1])["attributes"]["url.full"]
    assert span("GET", "{base}/ok?expand=rooms&note=a%20b")["attributes"]["url.full"].endswith("note=a%20b")
    assert "secret" not in span("PATCH", REQUESTS[11][1])["attributes"]["url.full"]
    assert span("GET", "http://LocalHost:{port}/ok")["attributes"]["server.address"] == "localhost"
    raised = by_request[("GET", "{base}/missing?raise=1")]
    assert raised["outcome"] == "ClientResponseError"
    assert raised["spans"][0]["attributes"]["error.type"] == "ClientResponseError"
    assert "http.response.status_code" not in raised["spans"][0]["attributes"]
    refused = by_request[("GET", "http://127.0.0.1:{closed}/ok")]
    assert refused["outcome"] == "ClientConnectorError" and refused["server"] == []
    assert refused["spans"][0]["status"] == (StatusCode.ERROR, "ClientConnectorError")
    assert refused["spans"][0]["events"][0][1]["exception.type"].endswith("ClientConnectorError")

    # the duration metric: the only instrument, same unit, buckets, attribute sets and exemplars (the
    # parent's: recorded once the CLIENT span is not current any more)
    want_names, want_points, want_bounds, want_exemplars = duration_points(contrib)
    have_names, have_points, have_bounds, have_exemplars = duration_points(lean)
    assert want_names == {
        ("http.client.request.duration", "s", "Duration of HTTP client requests.", http_client_tracing.SCHEMA_URL)
    }
    assert have_names == want_names
    assert have_bounds == want_bounds == {tuple(float(b) for b in http_client_tracing.DURATION_BUCKETS)}
    assert have_points == want_points
    assert sum(want_points.values()) == len(REQUESTS)
    # (one exemplar per bucket hit: how many depends on the timings)
    assert set(have_exemplars) == set(want_exemplars) == {"parent"}
    assert want_points[
        frozenset(
            {
                "http.request.method": "GET",
                "server.address": "127.0.0.1",
                "server.port": CLOSED_PORT,
                "error.type": "ClientConnectorError",
            }.items()
        )
    ]


async def test_an_unsampled_parent_gives_what_the_contrib_gives() -> None:
    """Under a remote parent that is not sampled: no span exported, the context still propagated
    (the non-recording span's id, flags 00), and the duration recorded, without ``error.type`` for an
    exception (the contrib sets it only on a recording span) but with it for a 5xx."""
    parent = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0xF067AA0BA902B7, True, TraceFlags(0)))
    )
    requests = [r for r in REQUESTS if r[1] in ("{base}/ok", "{base}/fail", "{base}/slow", "{base}/missing")]
    requests.append(("GET", "http://127.0.0.1:{closed}/ok", {}))
    contrib, lean = Side(lean=False), Side(lean=True)
    server = Server()
    async with fake_peer(server.handle) as base:
        expected = await run(contrib, server, base, requests, parent=parent)
        got = await run(lean, server, base, requests, parent=parent)
    assert got == expected
    for r in expected:
        assert r["spans"] == []
        flags = r["current"][0][1][2]
        assert not flags & 1  # not sampled
        assert all(seen[1] == ("other1", True, flags, "00") for seen in r["server"])
        assert r["current"][0] == ("request_start", ("other1", True, flags))
    port = int(base.rsplit(":", 1)[1])
    assert duration_points(lean)[1] == duration_points(contrib)[1]
    points = duration_points(contrib)[1]
    base_attributes = {"http.request.method": "GET", "server.address": "127.0.0.1"}
    assert points[frozenset({**base_attributes, "server.port": port, "http.response.status_code": 200}.items())]
    assert points[
        frozenset(
            {
                **base_attributes,
                "http.request.method": "DELETE",
                "server.port": port,
                "http.response.status_code": 500,
                "error.type": "500",
            }.items()
        )
    ]
    assert points[frozenset({**base_attributes, "server.port": port}.items())]  # the timeout
    assert sum(points.values()) == len(requests)


@pytest.mark.parametrize("suppress", [suppress_http_instrumentation, suppress_instrumentation])
async def test_suppressed_instrumentation_traces_nothing_as_with_the_contrib(suppress: Any) -> None:
    requests = [("GET", "{base}/ok", {}), ("GET", "{base}/fail", {})]
    results = []
    server = Server()
    async with fake_peer(server.handle) as base:
        for side in (Side(lean=False), Side(lean=True)):
            with suppress():
                results.append((await run(side, server, base, requests), side.metrics()))
    assert results[0][0] == results[1][0]
    for r in results[0][0]:
        assert r["spans"] == [] and all(seen[1] is None for seen in r["server"])
    assert results[0][1] == results[1][1] == []


async def test_excluded_urls_are_the_contribs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_PYTHON_EXCLUDED_URLS", "nothing-matches")
    monkeypatch.setenv("OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS", "skip/me,secret@")
    requests = [
        ("GET", "{base}/skip/me", {}),
        ("GET", "http://user:secret@127.0.0.1:{port}/ok", {}),
        ("GET", "{base}/ok", {}),
    ]
    server = Server()
    async with fake_peer(server.handle) as base:
        contrib, lean = Side(lean=False), Side(lean=True)
        expected = await run(contrib, server, base, requests)
        got = await run(lean, server, base, requests)
    assert got == expected
    assert [len(r["spans"]) for r in expected] == [0, 0, 1]
    assert expected[0]["server"] == [("/skip/me", None, None)]  # nothing injected, baggage neither
    assert sum(duration_points(lean)[1].values()) == 1


@pytest.mark.parametrize(
    "raw", ["GET", "get", "Post", "PURGE", "purge", " GET ", "QUERY", "FOO BAR", "_OTHER", "HTTP", " ", ""]
)
@pytest.mark.parametrize("capture_all", [False, True])
def test_method_attributes_are_the_contribs(raw: str, capture_all: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if capture_all:
        monkeypatch.setenv("OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS", "1")
    want: dict[str, str] = {}
    _set_http_method(want, raw, sanitize_method(raw), _StabilityMode.HTTP)
    name, span_attributes, metric_attributes = http_client_tracing._Methods(capture_all)(raw)
    assert span_attributes == want
    assert metric_attributes == {k: v for k, v in want.items() if k == "http.request.method"}
    assert name == _get_span_name(raw)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8001/holds/r-1/commit",
        "http://pricing:8004/quote?nights=3&room=7",
        "https://example.com/a?sig=1&b=2",
        "https://example.com/a?b=&sig=1&sig=2",
        "https://example.com/a?designation=x&assignee=y",
        "https://example.com/a?%53ignature=1",
        "https://example.com/a?q=%20#sig=1",
        "https://example.com/a#frag?sig=1",
        "https://u:p@example.com:8443/a?AWSAccessKeyId=k",
        "https://u@example.com/a",
        "http://[::1]:8080/a?X-Goog-Signature=s",
        "http://[::1/a",
        "http://example.com:99999/a",
        "http://example.com:0/a",
        "http://example.com:80/a",
        "HTTP://EXAMPLE.com/a",
        "not a url",
        "mailto:someone@example.com",
    ],
)
def test_url_attributes_are_the_contribs(url: str) -> None:
    from urllib.parse import urlparse

    want_full = redact_url(url)
    want: list[tuple[str, Any]] = []
    try:  # the contrib's reading of the redacted URL
        parsed = urlparse(want_full)
        if parsed.hostname:
            want.append(("server.address", parsed.hostname))
        if parsed.port:
            want.append(("server.port", parsed.port))
    except ValueError:
        pass
    assert http_client_tracing.url_attributes(url) == (want_full, tuple(want))
