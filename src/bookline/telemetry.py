"""OpenTelemetry set-up of a Bookline process: the only module that imports the SDK.

Each service gets its own :class:`ServiceTelemetry` (tracer provider, meter provider, tracer and
meter with the service's resource). A production process has one and installs it as the global
provider; the test suite runs several services in one process, each with its own providers that
share one in-memory exporter, so a whole booking can be asserted as one trace.

Every exported span passes through :class:`RedactingSpanExporter`, the safety net that scrubs
anything looking like a card number or an e-mail address, including query strings recorded by
auto-instrumentation. Log records pass through :class:`RedactingFilter`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import NoOpMeter, NoOpUpDownCounter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status

from bookline import __version__, http_client_tracing, http_tracing, otlp_encoding
from bookline.config import Settings
from bookline.redaction import needs_scrub, scrub

# stable HTTP semantic conventions for the HTTP instrumentations (must be set before they load)
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(v) for v in value)
    return value


def _dirty(attributes: Mapping[str, Any] | None) -> bool:
    for value in (attributes or {}).values():
        if isinstance(value, str):
            if needs_scrub(value):
                return True
        elif isinstance(value, (list, tuple)) and any(isinstance(v, str) and needs_scrub(v) for v in value):
            return True
    return False


def _scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: _scrub_value(v) for k, v in (attributes or {}).items()}


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter and scrubs every span's attributes, events and status before export."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    @staticmethod
    def redact(span: ReadableSpan) -> ReadableSpan:
        """The span itself when it holds nothing to scrub (the common case), else a scrubbed copy."""
        description = span.status.description
        if not (
            needs_scrub(span.name)
            or _dirty(span.attributes)
            or any(needs_scrub(e.name) or _dirty(e.attributes) for e in span.events)
            or (description and needs_scrub(description))
        ):
            return span
        status = Status(span.status.status_code, scrub(description)) if description else span.status
        return ReadableSpan(
            name=scrub(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_scrub_attributes(span.attributes),
            events=[Event(scrub(e.name), _scrub_attributes(e.attributes), e.timestamp) for e in span.events],
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([self.redact(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class RedactingFilter(logging.Filter):
    """Scrubs the formatted message of a log record before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the trace and span of the record's context."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        ctx = trace.get_current_span().get_span_context()
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "service": self.service_name,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info:
            entry["error"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry)


# of the instruments the HTTP instrumentations create, the ones TELEMETRY.md asks for; the others
# (active requests, request and response body sizes) cost four more recordings per request
HTTP_METRICS = frozenset({"http.server.request.duration", "http.client.request.duration"})


class _HttpDurationsMeterProvider(metrics.MeterProvider):
    """The meter provider handed to the HTTP instrumentations: their duration histograms are real,
    every other instrument they create is a no-op."""

    def __init__(self, inner: metrics.MeterProvider) -> None:
        self._inner = inner

    def get_meter(
        self, name: str, version: str | None = None, schema_url: str | None = None, attributes: Any = None
    ) -> metrics.Meter:
        inner = self._inner.get_meter(name, version, schema_url, attributes)
        return _HttpDurationsMeter(inner, name, version, schema_url)


class _HttpDurationsMeter(NoOpMeter):
    def __init__(self, inner: metrics.Meter, name: str, version: str | None, schema_url: str | None) -> None:
        super().__init__(name, version=version, schema_url=schema_url)
        self._inner = inner

    def create_histogram(
        self, name: str, unit: str = "", description: str = "", *, explicit_bucket_boundaries_advisory: Any = None
    ) -> metrics.Histogram:
        if name in HTTP_METRICS:
            return self._inner.create_histogram(
                name, unit, description, explicit_bucket_boundaries_advisory=explicit_bucket_boundaries_advisory
            )
        return super().create_histogram(name, unit, description)


@dataclass
class ServiceTelemetry:
    """The providers, tracer and meter of one service."""

    service_name: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider | None = None
    # a span per SQL statement besides the transaction's (BOOKLINE_TRACE_SQL_STATEMENTS)
    sql_statement_spans: bool = False
    # the stock OpenTelemetry set-up of the docs, which the benchmark compares Bookline's with
    stock: bool = False
    tracer: trace.Tracer = field(init=False)
    meter: metrics.Meter = field(init=False)

    def __post_init__(self) -> None:
        self.tracer = self.tracer_provider.get_tracer("bookline", __version__)
        self.meter = self.meter_provider.get_meter("bookline", __version__)

    @property
    def instance_id(self) -> str:
        """This process's ``service.instance.id`` (one per replica)."""
        return str(self.tracer_provider.resource.attributes.get("service.instance.id", ""))

    def instrument_app(self, app: Any) -> None:
        """A SERVER span and a duration per request: Bookline's lean middleware (``http_tracing``,
        the contrib's spans and attributes at a third of its cost), or the contrib instrumentation in
        the stock set-up and when request or response headers are to be recorded (which only it does)."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.util.http import (
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
            get_custom_headers,
        )

        captures_headers = get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST) or (
            get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE)
        )
        if not self.stock and not captures_headers:
            http_tracing.instrument_app(app, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
            return

        # no request header is recorded unless OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST
        # asks for it; if it does, the admin token (Authorization) is still recorded as [REDACTED]
        sanitized = [*get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS), "authorization"]
        if self.stock:
            # as the docs write it: every instrument, the receive and send spans, the sanitizing defaults
            FastAPIInstrumentor.instrument_app(
                app,
                tracer_provider=self.tracer_provider,
                meter_provider=self.meter_provider,
                excluded_urls="healthz,readyz",
            )
            return
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.tracer_provider,
            meter_provider=_HttpDurationsMeterProvider(self.meter_provider),
            excluded_urls="healthz,readyz",
            exclude_spans=["receive", "send"],
            http_capture_headers_sanitize_fields=sanitized,
        )

    def http_client_trace_config(self) -> Any:
        """CLIENT spans (stable HTTP semantic conventions), their duration and W3C propagation for one
        aiohttp session: Bookline's trace config (``http_client_tracing``, the contrib's spans and
        attributes at two thirds of its cost), or the contrib's in the stock set-up."""
        if self.stock:
            from opentelemetry.instrumentation.aiohttp_client import create_trace_config

            return create_trace_config(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
        return http_client_tracing.trace_config(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def instrument_database(self, db: Any) -> None:
        """Database spans for one service's database: one per transaction, and one per statement under
        it when ``sql_statement_spans`` (the stock set-up: one per statement only)."""
        if not self.stock:
            # a scope of their own: like the instrumentations' spans, not the domain steps of "bookline"
            db.trace_transactions(self.tracer_provider.get_tracer("bookline.db", __version__))
        if self.stock or self.sql_statement_spans:
            self.instrument_engine(db.sync_engine)

    def instrument_engine(self, engine: Any) -> None:
        """A span per statement for one engine, with this service's providers.

        ``SQLAlchemyInstrumentor().instrument()`` patches SQLAlchemy globally, once per process,
        with the first provider it is given; the test suite runs several services in one process,
        so each engine gets its own ``EngineTracer`` (what the instrumentor attaches per engine).
        """
        from opentelemetry.instrumentation.sqlalchemy import __name__ as scope
        from opentelemetry.instrumentation.sqlalchemy.version import (
            __version__ as version,
        )

        tracer = self.tracer_provider.get_tracer(scope, version)
        if self.stock:
            from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
            from opentelemetry.semconv.metrics import MetricInstruments

            # what SQLAlchemyInstrumentor().instrument(engine=...) attaches: the pool-usage gauge too
            meter = self.meter_provider.get_meter(scope, version)
            usage = meter.create_up_down_counter(MetricInstruments.DB_CLIENT_CONNECTIONS_USAGE, unit="connections")
            EngineTracer(tracer, engine, usage)
            return
        # the pool-usage gauge it would keep costs about a tenth of a service's CPU (two recordings
        # on every checkout and checkin); Bookline does not export it
        usage = NoOpUpDownCounter("db.client.connections.usage")
        _engine_tracer_class()(tracer, engine, usage)

    def flush(self, timeout_s: float) -> bool:
        """Export what is buffered (spans, then logs) within about ``timeout_s``: what a process about
        to exit hard does, so that its last spans and log lines still reach the backend."""
        deadline = time.monotonic() + timeout_s
        flushed = self.tracer_provider.force_flush(int(timeout_s * 1000))
        if self.logger_provider is not None:
            left_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
            flushed = self.logger_provider.force_flush(left_ms) and flushed
        return flushed

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()


@cache
def _engine_tracer_class() -> type:
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    class FileNameEngineTracer(EngineTracer):
        """Names a SQLite statement's span after the database file, not its whole path: a span name
        says which database ("SELECT booking.db"), not where the data directory happens to be."""

        def _operation_name(self, db_name: Any, statement: Any) -> str:
            if isinstance(db_name, str) and "/" in db_name:
                db_name = db_name.rsplit("/", 1)[-1]
            return str(super()._operation_name(db_name, statement))

    return FileNameEngineTracer


class _HashedOnceResource(Resource):
    """A resource that works out its hash once. The OTLP encoder groups spans by resource and hashes
    the resource of every span it encodes, and ``Resource`` hashes a sorted JSON dump of all its
    attributes each time. A resource never changes, so neither does its hash."""

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash


def build_resource(service_name: str, settings: Settings) -> Resource:
    ours = Resource.create(
        {
            "service.name": service_name,
            "service.version": __version__,
            "service.namespace": "bookline",
            "service.domain": "reservations",
            "deployment.environment.name": settings.environment,
            "service.instance.id": str(uuid.uuid4()),
        }
    )
    # the standard OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES variables win over our defaults
    merged = ours.merge(OTELResourceDetector().detect())
    return _HashedOnceResource(merged.attributes, merged.schema_url)


def _export_session(service_name: str, settings: Settings) -> Any:
    """The HTTP session of an OTLP exporter: it presents the service's credential (a short-lived JWT
    for the telemetry store, renewed as it ages), so the store knows which service sends. A process
    without a service key (a tool, a test) sends none; ``OTEL_EXPORTER_OTLP_HEADERS`` still applies."""
    import requests

    from bookline.auth.keys import MissingKeyError
    from bookline.auth.services import CALLERS, TELEMETRY_AUDIENCE, ServiceCredentials

    session = requests.Session()
    if service_name not in CALLERS:
        return session
    try:
        credentials = ServiceCredentials.of(service_name, settings)
    except MissingKeyError:
        return session

    def present(request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {credentials.token_for(TELEMETRY_AUDIENCE)}"
        return request

    session.auth = present
    return session


def setup_telemetry(
    service_name: str,
    settings: Settings,
    *,
    span_exporter: SpanExporter | None = None,
    metric_readers: Sequence[MetricReader] = (),
    install_global: bool = False,
    export: bool = True,
) -> ServiceTelemetry:
    """Build the telemetry of one service.

    ``span_exporter`` (tests) receives every span synchronously. OTLP/HTTP export of traces,
    metrics and logs is added whenever the standard OTLP endpoint variables are set, unless
    ``export`` is False.
    """
    stock = settings.telemetry_setup == "stock"
    resource = build_resource(service_name, settings)
    if stock:  # the resource as the SDK makes it, its hash worked out for every span encoded
        resource = Resource(resource.attributes, resource.schema_url)
    tracer_provider = TracerProvider(resource=resource)

    def wrap(exporter: SpanExporter) -> SpanExporter:
        return exporter if settings.unsafe_disable_redaction else RedactingSpanExporter(exporter)

    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(wrap(span_exporter)))
    readers = list(metric_readers)
    logger_provider: LoggerProvider | None = None
    if export and settings.exports_otlp:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        # Bookline's encoder writes the same OTLP bytes as the stock one in a third of the time
        exporter_class = OTLPSpanExporter if stock else otlp_encoding.span_exporter
        tracer_provider.add_span_processor(
            BatchSpanProcessor(wrap(exporter_class(session=_export_session(service_name, settings))))
        )
        interval = int(settings.otel.get("OTEL_METRIC_EXPORT_INTERVAL", "10000"))
        metric_exporter = OTLPMetricExporter(session=_export_session(service_name, settings))
        readers.append(PeriodicExportingMetricReader(metric_exporter, export_interval_millis=interval))
        logger_provider = LoggerProvider(resource=resource)
        log_exporter = OTLPLogExporter(session=_export_session(service_name, settings))
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    telemetry = ServiceTelemetry(
        service_name,
        tracer_provider,
        meter_provider,
        logger_provider,
        sql_statement_spans=settings.trace_sql_statements,
        stock=stock,
    )
    if install_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        configure_logging(service_name, logger_provider, redact=not settings.unsafe_disable_redaction)
    return telemetry


def configure_logging(service_name: str, logger_provider: LoggerProvider | None, *, redact: bool = True) -> None:
    """Structured JSON logs on stderr, and over OTLP beside the spans when an endpoint is set."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(JsonFormatter(service_name))
    handlers: list[logging.Handler] = [stderr]
    if logger_provider is not None:
        handlers.append(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))
    for handler in handlers:
        if redact:
            handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    logging.getLogger("uvicorn.access").disabled = True
    # one line per outgoing request is what the spans are for; keep their warnings only
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def inject_context(carrier: dict[str, str]) -> dict[str, str]:
    """Write the current trace context (W3C traceparent, baggage) into a carrier and return it."""
    propagate.inject(carrier)
    return carrier


def extract_context(carrier: Mapping[str, str]) -> Any:
    """Read a trace context out of a carrier (message headers, an outbox row)."""
    return propagate.extract(carrier)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
