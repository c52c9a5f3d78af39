"""A lean SERVER-span and duration-metric middleware for Bookline's FastAPI apps.

It stands in for ``FastAPIInstrumentor.instrument_app`` as Bookline configures it (stable HTTP
semantic conventions only, ``exclude_spans=["receive", "send"]``, health probes excluded, only the
``http.server.request.duration`` histogram exported) and emits the same telemetry, without the
per-request work of the contrib ASGI middleware that Bookline does not use: semantic-convention mode
checks, header sanitizing and capture, the active-requests counter and the body-size histograms, the
response propagator, the receive/send wrappers of the skipped spans, and a route lookup that walks
every route of the app in Python.

Per request it emits, as the contrib does with those settings:

* one span named ``"{METHOD} {http.route}"`` (``"{METHOD}"`` when no route matches; ``"HTTP"`` for a
  method outside RFC 9110/5789, recorded as ``http.request.method="_OTHER"`` with
  ``http.request.method_original``), of kind SERVER with the W3C context (``traceparent``, baggage:
  whatever the global propagator reads) extracted from the request headers, or INTERNAL under the
  current span when there already is one (an app called in-process from traced code);
* its attributes, all passed at ``start_span`` so that the sampler sees them: ``url.scheme``,
  ``server.address`` and ``server.port`` (from the ASGI ``server`` of the listening socket, as the
  contrib computes them), ``network.protocol.version``, ``url.path``, ``url.query`` (when there is
  one), ``http.request.method`` (+ ``_original``), ``user_agent.original`` (+
  ``user_agent.synthetic.type``), ``client.address``, ``client.port``, ``http.route``; then, once,
  at ``http.response.start``: ``http.response.status_code``, and on a 5xx ``error.type`` and status
  ERROR (a 4xx is not an error for a server span);
* an exception escaping the app's middlewares is recorded on the span with status ERROR, before the
  app's own ``Exception`` handler runs (so the handler still sees the span current);
* ``http.server.request.duration`` (histogram, ``s``, the contrib's bucket advisory) recorded once,
  with ``http.request.method``, ``url.scheme``, ``http.route``, ``http.response.status_code``,
  ``network.protocol.version`` and ``error.type`` when set.

The span is current while every Bookline middleware and handler runs: :func:`instrument_app` wraps the
app's middleware stack where the contrib does (outside Starlette's ``ServerErrorMiddleware``), and
ends the span when the last body chunk has been sent, as the contrib does.

What it does not do, on purpose:

* no request or response header is ever recorded: ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`` are
  honoured only by the stock contrib instrumentation;
* the probes in ``excluded_paths`` are excluded by exact path (the contrib's ``excluded_urls`` is a
  regex searched in the whole URL, so it also drops any URL that merely contains the word);
* the spans carry the instrumentation scope ``bookline.http_tracing``, not the contrib's;
* no ``BackgroundTask`` spans, no websocket spans, no global response propagator, no
  ``suppress_http_instrumentation`` check: Bookline uses none of them;
* ``OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS`` is read once, at installation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from time import perf_counter
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import INVALID_SPAN, SpanKind, Status, StatusCode
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import Match, Route, WebSocketRoute, get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookline import __version__

SCOPE_NAME = "bookline.http_tracing"
# the schema of the stable HTTP conventions, as the contrib declares it in "http" opt-in mode
SCHEMA_URL = "https://opentelemetry.io/schemas/1.21.0"
DURATION_METRIC = "http.server.request.duration"
# the contrib's explicit bucket boundaries advisory for the stable duration histogram
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# RFC 9110, RFC 5789 and the QUERY method, as opentelemetry.util.http.sanitize_method knows them
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY")
# opentelemetry.util.http.constants (synthetic user agents)
_TEST_AGENTS = ("alwayson",)
_BOT_AGENTS = ("googlebot", "bingbot")

_ERROR = Status(StatusCode.ERROR)
_DURATION_KEYS = ("url.scheme", "network.protocol.version", "http.request.method", "http.route")


def _decode(value: bytes) -> str:
    # the contrib's decoding of an ASGI header item
    try:
        return value.decode("utf-8")
    except ValueError:
        return value.decode("unicode_escape")


class _HeaderGetter(Getter[Any]):
    """Reads a propagation header out of the request's headers, as the contrib's ``ASGIGetter``
    does (every value of a repeated header), from the mapping :func:`_headers` built once."""

    _keys: dict[str, bytes] = {}

    def get(self, carrier: dict[bytes, Any], key: str) -> list[str] | None:
        raw_key = self._keys.get(key)
        if raw_key is None:
            raw_key = self._keys.setdefault(key, key.lower().encode("latin-1"))
        value = carrier.get(raw_key)
        if value is None:
            return None
        if isinstance(value, list):
            return [_decode(v) for v in value]
        return [_decode(value)]

    def keys(self, carrier: dict[bytes, Any]) -> list[str]:
        return [_decode(k) for k in carrier]


_GETTER = _HeaderGetter()


def _headers(raw: Iterable[Any]) -> dict[bytes, Any]:
    """The request headers by (lower-case, as ASGI gives them) name: one value, or the list of the
    values of a header sent more than once."""
    if not isinstance(raw, (list, tuple)):
        raw = list(raw)
    headers = dict(raw)
    if len(headers) == len(raw):
        return headers
    multi: dict[bytes, Any] = {}
    for name, value in raw:
        if name in multi:
            seen = multi[name]
            multi[name] = [*seen, value] if isinstance(seen, list) else [seen, value]
        else:
            multi[name] = value
    return multi


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


@lru_cache(maxsize=256)
def _synthetic_type(user_agent: str) -> str | None:
    lowered = user_agent.lower()
    if any(p in lowered for p in _TEST_AGENTS):
        return "test"
    if any(p in lowered for p in _BOT_AGENTS):
        return "bot"
    return None


def _as_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    try:
        return int(value)
    except (ValueError, TypeError):
        return None


@lru_cache(maxsize=64)
def _server_address(host: Any, port: Any) -> str:
    # the contrib's server.address: the listening address, with the port unless it is 80
    return host + (":" + str(port) if str(port) != "80" else "")


class _Methods:
    """``http.request.method``, ``http.request.method_original`` and the span name's method of a raw
    ASGI method, as the contrib works them out (precomputed for the known methods)."""

    def __init__(self, capture_all: bool) -> None:
        self.capture_all = capture_all
        self.known = {m: self.compute(m) for m in KNOWN_METHODS}

    def sanitize(self, method: str) -> str:
        method = method.upper()
        return method if self.capture_all or method in KNOWN_METHODS else "_OTHER"

    def compute(self, raw: str) -> tuple[str, str | None, str]:
        original, normalized = raw.strip(), self.sanitize(raw).strip()
        span_method = self.sanitize(raw.strip())
        return (
            normalized,
            original if original and original != normalized else None,
            "HTTP" if span_method == "_OTHER" else span_method,
        )

    def __call__(self, raw: str) -> tuple[str, str | None, str]:
        found = self.known.get(raw)
        return found if found is not None else self.compute(raw)


_NAMED_GROUP = re.compile(r"\(\?P<([A-Za-z_][A-Za-z0-9_]*)>")
# a compiled alternation of route regexes (its match, or None) and the route path of each alternative
_Alternation = tuple[Callable[[str], Any] | None, dict[int, str]]
_NO_ROUTE: _Alternation = (None, {})


def _flatten_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The matchable routes of an app, routes included with ``include_router`` flattened to their
    effective paths (what the contrib's FastAPI instrumentor matches against)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI < 0.137.2
        for route in routes:
            if hasattr(route, "effective_route_contexts"):
                yield from route.effective_route_contexts()
            else:
                yield route
        return
    yield from iter_route_contexts(list(routes))


def _original(route: Any) -> Any:
    original = getattr(route, "original_route", route)
    return original if original is not None else route


class _RouteTable:
    """``http.route`` of a request before the app runs, with the contrib's semantics: the path of the
    first route that matches fully, else of the last that matches partially (another method), else
    none. The app's route regexes are compiled into one alternation per method, so that a lookup is
    one regex match however many routes the app has (two for a 404 or a 405)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.key: Any = None
        # (the contrib's route list when it must be walked, the alternation by method, the reversed
        # alternation of every route, the methods some route names), replaced as one
        self.state: tuple[list[Any] | None, dict[str | None, _Alternation], _Alternation, frozenset[str]] = (
            None,
            {None: _NO_ROUTE},
            _NO_ROUTE,
            frozenset(),
        )

    def _refresh(self) -> None:
        router = self.app.router
        routes = router.routes
        key = (id(routes), len(routes), getattr(router, "_routes_version", None))
        if key != self.key:
            self.state = self._compile(list(_flatten_routes(routes)))
            self.key = key

    @classmethod
    def _compile(cls, flat: list[Any]) -> Any:
        entries: list[tuple[str, frozenset[str] | None, str]] = []
        for route in flat:
            original = _original(route)
            if isinstance(original, WebSocketRoute):
                continue  # never matches an http request
            regex = getattr(route, "path_regex", None)
            path = getattr(route, "path", None)
            if not isinstance(original, Route) or regex is None or not isinstance(path, str) or regex.flags & ~re.U:
                return flat, {}, _NO_ROUTE, frozenset()  # a Mount, a Host, a custom route: walk them all
            methods = getattr(route, "methods", None)
            entries.append((regex.pattern, frozenset(methods) if methods else None, path))
        methods = frozenset(m for _, route_methods, _ in entries for m in route_methods or ())
        try:
            by_method = {m: cls._combine([e for e in entries if e[1] is None or m in e[1]]) for m in [*methods, None]}
            return None, by_method, cls._combine(list(reversed(entries))), methods
        except re.error:
            return flat, {}, _NO_ROUTE, frozenset()

    @staticmethod
    def _combine(entries: list[tuple[str, frozenset[str] | None, str]]) -> _Alternation:
        """One regex matching what the routes' regexes match, in their order: the number of the
        outermost group that matched (``lastindex``) names the route."""
        if not entries:
            return _NO_ROUTE
        parts, index, group = [], {}, 1
        for i, (pattern, _, path) in enumerate(entries):
            renamed = _NAMED_GROUP.sub(lambda m, i=i: f"(?P<r{i}_{m.group(1)}>", pattern)
            parts.append(f"({renamed})")
            index[group] = path
            group += 1 + re.compile(pattern).groups
        return re.compile("|".join(parts)).match, index

    def __call__(self, scope: Scope) -> str | None:
        self._refresh()
        slow, by_method, any_method, methods = self.state
        if slow is not None:
            return self._slow(slow, scope)
        route_path = get_route_path(scope) if scope.get("root_path") else scope["path"]
        method = scope["method"]
        match, index = by_method[method if method in methods else None]
        if match is not None and (found := match(route_path)):
            return index[found.lastindex]
        match, index = any_method
        if match is not None and (found := match(route_path)):
            return index[found.lastindex]
        return None

    @staticmethod
    def _slow(routes: list[Any], scope: Scope) -> str | None:
        # the contrib's loop (opentelemetry.instrumentation.fastapi._get_route_details)
        route = None
        for candidate in routes:
            match, _ = Route.matches(candidate, scope) if isinstance(candidate, Route) else candidate.matches(scope)
            if match == Match.FULL:
                try:
                    route = candidate.path
                except AttributeError:
                    route = scope.get("path")
                break
            if match == Match.PARTIAL:
                route = candidate.path
        return route


class _RecordException:
    """Inside Starlette's ``ServerErrorMiddleware``: records an exception escaping the app on the
    current (server) span before the app's ``Exception`` handler answers 500 (as the contrib does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            span = trace.get_current_span()
            if span.is_recording():
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


class HttpServerTracing:
    """The ASGI middleware: a SERVER span and a duration per HTTP request (see the module)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: trace.Tracer,
        duration: metrics.Histogram,
        route_of: Callable[[Scope], str | None],
        excluded_paths: Iterable[str] = (),
        capture_all_methods: bool = False,
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.duration = duration
        self.route_of = route_of
        self.excluded = frozenset(excluded_paths)
        self.methods = _Methods(capture_all_methods)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.excluded:
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        headers = _headers(scope.get("headers") or ())
        route = self.route_of(scope)
        raw_method = scope.get("method", "")
        method, method_original, span_method = self.methods(raw_method)

        server = scope.get("server") or ("0.0.0.0", 80)
        port = server[1]
        attributes: dict[str, Any] = {}
        metric_attributes: dict[str, Any] = {}
        if scheme := scope.get("scheme"):
            attributes["url.scheme"] = metric_attributes["url.scheme"] = scheme
        attributes["server.address"] = _server_address(server[0], port)
        if port and (server_port := _as_int(port)) is not None:
            attributes["server.port"] = server_port
        if version := scope.get("http_version"):
            attributes["network.protocol.version"] = metric_attributes["network.protocol.version"] = version
        if path := scope.get("path"):
            attributes["url.path"] = path
            if query := scope.get("query_string"):
                attributes["url.query"] = query.decode("utf-8") if isinstance(query, bytes) else query
        if raw_method:
            if method_original is not None:
                attributes["http.request.method_original"] = method_original
            if method:
                attributes["http.request.method"] = metric_attributes["http.request.method"] = method
        if (user_agent := headers.get(b"user-agent")) is not None:
            if agent := _decode(_first(user_agent)):
                attributes["user_agent.original"] = agent
                if synthetic := _synthetic_type(agent):
                    attributes["user_agent.synthetic.type"] = synthetic
        if client := scope.get("client"):
            if client[0]:
                attributes["client.address"] = client[0]
            if client[1] and (client_port := _as_int(client[1])) is not None:
                attributes["client.port"] = client_port
        if route:
            attributes["http.route"] = metric_attributes["http.route"] = route
            name = f"{span_method} {route}" if span_method else route
        else:
            name = span_method

        if trace.get_current_span() is INVALID_SPAN:
            parent = extract(headers, getter=_GETTER)
            kind = SpanKind.SERVER
        else:
            parent = context_api.get_current()
            kind = SpanKind.INTERNAL
        span = self.tracer.start_span(name, parent, kind, attributes=attributes)
        token = context_api.attach(trace.set_span_in_context(span, parent))
        recording = span.is_recording()
        ended = False

        async def traced_send(message: Message) -> None:
            nonlocal ended
            event = message["type"]
            if event == "http.response.start":
                status = message["status"]
                if status:
                    self._status(span, recording, metric_attributes, status)
            await send(message)
            # the contrib ends its span here, after the last body chunk (it ignores trailers when its
            # send spans are excluded)
            if event == "http.response.body" and not message.get("more_body", False) and not ended:
                ended = True
                span.end()

        try:
            await self.app(scope, receive, traced_send)
        except Exception as exc:
            if not ended and recording:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        finally:
            # recorded while the span is current: the same exemplar as the contrib's
            self.duration.record(max(perf_counter() - start, 0), metric_attributes)
            context_api.detach(token)
            if not ended:
                span.end()

    @staticmethod
    def _status(span: Any, recording: bool, metric_attributes: dict[str, Any], status: Any) -> None:
        text = str(status)
        try:
            code = int(status)
        except ValueError:
            code = -1
        if code < 0:
            metric_attributes["error.type"] = text
            if recording:
                span.set_attribute("error.type", text)
                span.set_status(Status(StatusCode.ERROR, "Non-integer HTTP status: " + text))
            return
        metric_attributes["http.response.status_code"] = code
        if code < 100 or code >= 500:
            metric_attributes["error.type"] = text
            if recording:
                span.set_attributes({"http.response.status_code": code, "error.type": text})
                span.set_status(_ERROR)
        elif recording:
            span.set_attribute("http.response.status_code", code)


def instrument_app(
    app: Any,
    *,
    tracer_provider: trace.TracerProvider | None,
    meter_provider: metrics.MeterProvider | None,
    excluded_paths: Iterable[str] = ("/healthz", "/readyz"),
) -> None:
    """Trace every HTTP request of a FastAPI (or Starlette) ``app``: a SERVER span and a
    ``http.server.request.duration`` recording each, as ``FastAPIInstrumentor.instrument_app`` with
    Bookline's settings would, except for the requests to ``excluded_paths`` (exact paths).

    Like the contrib, it replaces ``app.build_middleware_stack`` so that the middleware wraps the
    whole stack, every user middleware included, and the exception recorder sits inside Starlette's
    ``ServerErrorMiddleware``. Installing it twice does nothing the second time."""
    if getattr(app, "_bookline_http_tracing", False):
        return
    tracer = trace.get_tracer(SCOPE_NAME, __version__, tracer_provider, schema_url=SCHEMA_URL)
    meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider, schema_url=SCHEMA_URL)
    duration = meter.create_histogram(
        name=DURATION_METRIC,
        unit="s",
        description="Duration of HTTP server requests.",
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )
    capture_all = bool(os.environ.get("OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS"))
    route_of = _RouteTable(app)
    excluded = tuple(excluded_paths)
    original_build = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        stack = original_build()
        if isinstance(stack, ServerErrorMiddleware):
            stack = ServerErrorMiddleware(app=_RecordException(stack.app), handler=stack.handler, debug=stack.debug)
        else:  # not Starlette's usual stack: still trace it, recording what escapes it
            stack = _RecordException(stack)
        return HttpServerTracing(
            stack,
            tracer=tracer,
            duration=duration,
            route_of=route_of,
            excluded_paths=excluded,
            capture_all_methods=capture_all,
        )

    app.build_middleware_stack = build_middleware_stack
    app.middleware_stack = None  # rebuilt, with the tracing, on the next call
    app._bookline_http_tracing = True
