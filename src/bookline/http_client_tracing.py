"""A lean CLIENT-span and duration-metric ``aiohttp.TraceConfig`` for the calls between services.

It stands in for ``opentelemetry.instrumentation.aiohttp_client.create_trace_config`` as Bookline
configures it (stable HTTP semantic conventions only, no URL filter, no hooks, no captured headers,
only the ``http.client.request.duration`` histogram exported) and emits the same telemetry, without
the per-request work of the contrib that Bookline does not use: semantic-convention mode checks, the
request headers copied into a dict for a header capture that captures nothing, and the URL parsed
three times over (``urlparse`` twice for the redaction, once more for the server address), then
re-filtered for the metric.

Per request (one ``ClientSession._request``, its redirects included) it emits, as the contrib does:

* one span of kind CLIENT, child of the current span, named after the method (``"GET"``; ``"HTTP"``
  for a method outside RFC 9110/5789, recorded as ``http.request.method="_OTHER"`` with
  ``http.request.method_original``), with at ``start_span`` (so that the sampler sees them):
  ``http.request.method`` (+ ``_original``), ``url.full`` (the URL asked for, before any redirect,
  with credentials replaced by ``REDACTED:REDACTED`` and the ``AWSAccessKeyId``, ``Signature``,
  ``sig`` and ``X-Goog-Signature`` query parameters by ``REDACTED``, exactly as
  ``opentelemetry.util.http.redact_url`` does it), ``server.address`` and ``server.port`` (the port
  only when the URL names one);
* the span is current from ``on_request_start`` to ``on_request_end``/``on_request_exception`` (in
  the task making the request, as with the contrib), and the W3C context is injected into the request
  headers with the global propagator while it is current (``traceparent`` of the CLIENT span,
  baggage);
* at ``on_request_end`` (the final response): ``http.response.status_code``; on a status under 100 or
  of 400 and more, ``error.type`` (the status) and status ERROR without description (a 4xx is an
  error for a client span);
* at ``on_request_exception`` (connection error, timeout, ``raise_for_status``, cancellation), when
  the span is recording: ``error.type`` (the exception's qualified name), status ERROR with that
  name as description, and the exception recorded as an event;
* ``http.client.request.duration`` (histogram, ``s``, the contrib's bucket advisory) recorded once,
  after the span has ended and stopped being current, with ``http.request.method``,
  ``server.address``, ``server.port``, ``http.response.status_code`` and ``error.type`` when set
  (``error.type`` of an exception only when the span was recording: a contrib quirk, kept).

Nothing at all (no span, no metric, no header) for a request made while instrumentation is
suppressed (``suppress_instrumentation``, ``suppress_http_instrumentation``), or whose URL matches
``OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS`` (else ``OTEL_PYTHON_EXCLUDED_URLS``), read when the
trace config is made, as the contrib does.

What it does differently, on purpose:

* the spans and the metric carry the instrumentation scope ``bookline.http_tracing`` (the lean server
  middleware's), not the contrib's;
* ``OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS`` is read once, when the trace config is
  made (the contrib reads it on every request);
* no request or response header is ever recorded (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*`` are
  not read by ``create_trace_config`` either), no ``url_filter``, no request or response hook;
* a request ends its span and records its duration once, even should another trace config's
  ``on_request_end`` hook raise (the contrib would then end the span a second time and record a
  second duration from ``on_request_exception``);
* ``Span.set_status(UNSET)`` on a status under 400 is not called (a no-op on an SDK span).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from time import perf_counter
from typing import Any
from urllib.parse import urlparse

import aiohttp
from opentelemetry import context as context_api
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.utils import (
    _SUPPRESS_HTTP_INSTRUMENTATION_KEY,
    _SUPPRESS_INSTRUMENTATION_KEY,
    _SUPPRESS_INSTRUMENTATION_KEY_PLAIN,
)
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.http import ExcludeList, parse_excluded_urls, redact_query_parameters, redact_url

from bookline import __version__
from bookline.http_tracing import DURATION_BUCKETS, KNOWN_METHODS, SCHEMA_URL, SCOPE_NAME

DURATION_METRIC = "http.client.request.duration"
DURATION_DESCRIPTION = "Duration of HTTP client requests."

_ERROR = Status(StatusCode.ERROR)
_CLIENT = SpanKind.CLIENT

# "scheme://authority" as urllib.parse.urlsplit delimits them (the authority ends at "/", "?" or "#")
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*").match
# opentelemetry.util.http.redact_query_parameters can only change a query in which one of these
# appears literally: the names it redacts ("X-Goog-Signature" contains "Signature"), or "%" (a name
# percent-encoded); any other query is left as it is, without parsing it
_QUERY_TRIGGERS = ("sig", "Signature", "AWSAccessKeyId", "%")


def _server_items(url: str) -> tuple[tuple[str, Any], ...]:
    """``server.address`` and ``server.port`` of a (redacted) URL, as the contrib reads them: with
    ``urlparse``, the port only when there is one, nothing after a ``ValueError``."""
    items: list[tuple[str, Any]] = []
    try:
        parsed = urlparse(url)
        if parsed.hostname:
            items.append(("server.address", parsed.hostname))
        if parsed.port:
            items.append(("server.port", int(parsed.port)))
    except ValueError:
        pass
    return tuple(items)


_server_of_origin = lru_cache(maxsize=256)(_server_items)


def url_attributes(url: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """``url.full`` and the server items of a request URL (``str`` of aiohttp's ``yarl.URL``), as
    the contrib works them out with ``redact_url`` and ``urlparse``. The common URL (no credentials,
    no sensitive-looking query) is not parsed: its server items are cached by origin, which is all
    they depend on."""
    found = _ORIGIN(url)
    if found is None or "@" in (origin := found.group()):
        # credentials (or an unusual URL): the contrib's own functions, on the whole URL
        full = redact_url(url)
        return full, _server_items(full)
    full = url
    start = found.end()
    if url.find("?", start) >= 0:
        for trigger in _QUERY_TRIGGERS:
            if url.find(trigger, start) >= 0:
                full = redact_query_parameters(url)
                break
    return full, _server_of_origin(origin)


class _Methods:
    """The span name, span attributes and metric attributes of a request method, as the contrib
    works them out (``_get_span_name``, ``_set_http_method`` with ``sanitize_method``), computed once
    per method."""

    def __init__(self, capture_all: bool) -> None:
        self.capture_all = capture_all
        self.cache: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}

    def sanitize(self, method: str) -> str:
        method = method.upper()
        return method if self.capture_all or method in KNOWN_METHODS else "_OTHER"

    def compute(self, raw: str) -> tuple[str, dict[str, str], dict[str, str]]:
        original, normalized = raw.strip(), self.sanitize(raw).strip()
        span_attributes: dict[str, str] = {}
        if original != normalized and original:
            span_attributes["http.request.method_original"] = original
        metric_attributes: dict[str, str] = {}
        if normalized:
            span_attributes["http.request.method"] = metric_attributes["http.request.method"] = normalized
        span_method = self.sanitize(raw.strip())
        return ("HTTP" if span_method == "_OTHER" else span_method), span_attributes, metric_attributes

    def __call__(self, raw: str) -> tuple[str, dict[str, str], dict[str, str]]:
        found = self.cache.get(raw)
        if found is None:
            found = self.compute(raw)
            if len(self.cache) < 64:
                self.cache[raw] = found
        return found


class _RequestContext:
    """The ``trace_config_ctx`` of one request (aiohttp makes one per request and trace config)."""

    __slots__ = ("trace_request_ctx", "span", "token", "start", "metric_attributes")

    def __init__(self, trace_request_ctx: Any = None) -> None:
        self.trace_request_ctx = trace_request_ctx
        self.span: Any = None


def _excluded_urls() -> ExcludeList | None:
    # opentelemetry.util.http.get_excluded_urls("AIOHTTP_CLIENT"), None when it excludes nothing
    value = os.environ.get("OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS", os.environ.get("OTEL_PYTHON_EXCLUDED_URLS", ""))
    return parse_excluded_urls(value) if value else None


def trace_config(
    *,
    tracer_provider: trace.TracerProvider | None,
    meter_provider: metrics.MeterProvider | None,
) -> aiohttp.TraceConfig:
    """An ``aiohttp.TraceConfig`` (for ``ClientSession(trace_configs=[...])``) tracing every request
    of the session: a CLIENT span, W3C context propagation and a ``http.client.request.duration``
    recording each, as ``create_trace_config(tracer_provider=..., meter_provider=...,
    sem_conv_opt_in_mode=_StabilityMode.HTTP)`` would (see the module). ``meter_provider`` gets
    the one histogram and no other instrument; ``None``: the global providers."""
    tracer = trace.get_tracer(SCOPE_NAME, __version__, tracer_provider, schema_url=SCHEMA_URL)
    meter = metrics.get_meter(SCOPE_NAME, __version__, meter_provider, schema_url=SCHEMA_URL)
    duration = meter.create_histogram(
        name=DURATION_METRIC,
        unit="s",
        description=DURATION_DESCRIPTION,
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )
    record = duration.record
    start_span = tracer.start_span
    excluded = _excluded_urls()
    url_disabled = excluded.url_disabled if excluded is not None else None
    methods = _Methods(capture_all=bool(os.environ.get("OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS")))
    get_current = context_api.get_current
    attach, detach = context_api.attach, context_api.detach
    set_span_in_context = trace.set_span_in_context

    def end(ctx: _RequestContext, span: Any) -> None:
        elapsed = max(perf_counter() - ctx.start, 0)
        ctx.span = None
        detach(ctx.token)
        span.end()
        # recorded once the parent is current again: the same exemplar as the contrib's
        record(elapsed, ctx.metric_attributes)

    async def on_request_start(
        _session: aiohttp.ClientSession, ctx: _RequestContext, params: aiohttp.TraceRequestStartParams
    ) -> None:
        current = get_current()
        if (
            current.get(_SUPPRESS_INSTRUMENTATION_KEY)
            or current.get(_SUPPRESS_INSTRUMENTATION_KEY_PLAIN)
            or current.get(_SUPPRESS_HTTP_INSTRUMENTATION_KEY)
        ):
            return
        url = str(params.url)
        if url_disabled is not None and url_disabled(url):
            return
        ctx.start = perf_counter()
        name, method_attributes, metric_method = methods(params.method)
        full, server = url_attributes(url)
        attributes: dict[str, Any] = {**method_attributes, "url.full": full}
        metric_attributes: dict[str, Any] = {**metric_method}
        if server:
            attributes.update(server)
            metric_attributes.update(server)
        ctx.metric_attributes = metric_attributes
        span = ctx.span = start_span(name, context=current, kind=_CLIENT, attributes=attributes)
        context = set_span_in_context(span, current)
        ctx.token = attach(context)
        inject(params.headers, context)

    async def on_request_end(
        _session: aiohttp.ClientSession, ctx: _RequestContext, params: aiohttp.TraceRequestEndParams
    ) -> None:
        span = ctx.span
        if span is None:
            return
        status = params.response.status
        metric_attributes = ctx.metric_attributes
        try:
            code = int(status)
        except ValueError:
            code = -1
        if code < 0:
            text = str(status)
            metric_attributes["error.type"] = text
            if span.is_recording():
                span.set_attribute("error.type", text)
                span.set_status(Status(StatusCode.ERROR, "Non-integer HTTP status: " + text))
        elif code < 100 or code >= 400:
            text = str(status)
            metric_attributes["http.response.status_code"] = code
            metric_attributes["error.type"] = text
            if span.is_recording():
                span.set_attributes({"http.response.status_code": code, "error.type": text})
                span.set_status(_ERROR)
        else:
            metric_attributes["http.response.status_code"] = code
            if span.is_recording():
                span.set_attribute("http.response.status_code", code)
        end(ctx, span)

    async def on_request_exception(
        _session: aiohttp.ClientSession, ctx: _RequestContext, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        span = ctx.span
        if span is None:
            return
        exception = params.exception
        if exception and span.is_recording():
            kind = type(exception).__qualname__
            span.set_attribute("error.type", kind)
            ctx.metric_attributes["error.type"] = kind
            span.set_status(Status(StatusCode.ERROR, kind))
            span.record_exception(exception)
        end(ctx, span)

    config = aiohttp.TraceConfig(trace_config_ctx_factory=_RequestContext)  # type: ignore[arg-type]
    config.on_request_start.append(on_request_start)  # type: ignore[arg-type]
    config.on_request_end.append(on_request_end)  # type: ignore[arg-type]
    config.on_request_exception.append(on_request_exception)  # type: ignore[arg-type]
    return config
