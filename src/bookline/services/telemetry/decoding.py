"""Parsed OTLP export requests turned into the plain rows the store writes.

Attributes become compact JSON text, ids become lowercase hex, and each span also yields the facts
the tail sampler reads (packed: :data:`~bookline.services.telemetry.sampling.PackedFacts`, attributes
and resource as their JSON text) and a per-trace delta for the trace summary row. This is the hot path of
ingestion, so it iterates the protobuf messages once and builds tuples.

An item that cannot be stored (a span whose trace id is not 16 bytes, a log record with a 3-byte span
id, a histogram point whose bucket counts do not match its bounds) is left out and counted in
:class:`Rejections`; the export answers ``partial_success`` with that count while the valid items
are kept.

Every text a sender chose is redacted before it becomes a row (``redact``, off only in a control test):
span and event names, status messages, scope names, log bodies and severities, metric names, units and
descriptions, and the strings of every attribute (resource, span, event, link, log record, metric
point; keys and nested values too). Whoever sent it, no card number, e-mail address or secret reaches
telemetry.db. Ids (trace, span, parent, linked) are bytes made hex and are never looked at.
"""

from __future__ import annotations

import base64
import json
import json.encoder
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from bookline.redaction import needs_scrub, needs_scrub_unremembered, scrub
from bookline.services.telemetry.otlp import REQUESTS, decompress, parse_request
from bookline.services.telemetry.sampling import PackedFacts

KINDS = ("INTERNAL", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")  # UNSPECIFIED reads as INTERNAL
STATUS_CODES = ("UNSET", "OK", "ERROR")
ERROR = 2
_ZERO_TRACE, _ZERO_SPAN = bytes(16), bytes(8)


def any_value(value: AnyValue) -> Any:
    """An attribute value as JSON-ready Python (bytes as base64, non-finite floats as text)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind is None:
        return None
    return getattr(value, kind)  # bool_value, int_value


_SCALARS = frozenset({"string_value", "int_value", "bool_value"})
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})  # the values plain_json writes as compact does


def _cleaned(value: Any) -> Any:
    """A decoded value with every string (keys too) scrubbed of card numbers, e-mails and secrets."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k): _cleaned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    return value


def _clean_text(text: str) -> str:
    return scrub(text) if text and needs_scrub(text) else text


def _clean_json(value: Any, encoded: str) -> str:
    """``encoded`` (the compact JSON of ``value``), or the JSON of its scrubbed copy when it holds
    something to scrub: one look at the whole text, the copy only for the rare dirty one."""
    return compact(_cleaned(value)) if needs_scrub_unremembered(encoded) else encoded


def attributes_of(key_values: Any) -> dict[str, Any]:
    # the hot loop of ingestion: most values are non-empty strings, read without asking their kind
    attributes = {}
    for kv in key_values:
        value = kv.value
        text = value.string_value
        if text:
            attributes[kv.key] = text
        else:
            kind = value.WhichOneof("value")
            attributes[kv.key] = getattr(value, kind) if kind in _SCALARS else any_value(value)
    return attributes


def _plain_attributes(key_values: Any) -> tuple[dict[str, Any], bool]:
    """``attributes_of(key_values)``, and whether every value is a string, an integer, a boolean or
    None (what :func:`plain_json` may encode). The hot loop of ingestion: most values are non-empty
    strings, read without asking their kind."""
    attributes = {}
    plain = True
    for kv in key_values:
        value = kv.value
        text = value.string_value
        if text:
            attributes[kv.key] = text
            continue
        kind = value.WhichOneof("value")
        if kind in _SCALARS:
            attributes[kv.key] = getattr(value, kind)
        else:
            attributes[kv.key] = any_value(value)
            plain = False
    return attributes, plain


def _compact_encoder() -> Callable[[Any], str]:
    """Compact JSON (no spaces, UTF-8 kept), the encoder built once.

    ``json.dumps`` and ``JSONEncoder.encode`` build a new C encoder on every call, which is a third
    of the cost of encoding a span's ten attributes; the C encoder itself is reusable.
    """
    fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return fallback

    def unserializable(value: Any) -> Any:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    encode = make(None, unserializable, json.encoder.encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


compact = _compact_encoder()
_dumps = orjson.dumps


def plain_json(value: dict[str, Any]) -> str:
    """``compact(value)`` for a dict whose keys are strings and whose values are strings, integers,
    booleans or None, ten times faster: orjson writes these exactly as ``compact`` does (the same
    escapes, UTF-8 kept, no spaces). Not floats, whose exponents it writes differently (1e16 for
    1e+16), nor a string Python holds but UTF-8 cannot (a lone surrogate): ``compact`` writes those."""
    try:
        return _dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, an integer past 64 bits
        return compact(value)


def _resource(key_values: Any, redact: bool = True) -> tuple[dict[str, Any], str, str]:
    """Resource attributes, the service name (the spec's default when missing) and the stored JSON."""
    attrs, plain = _plain_attributes(key_values)
    encode = plain_json if plain else compact
    if redact and needs_scrub_unremembered(encode(attrs)):
        attrs = _cleaned(attrs)
    service = attrs.get("service.name")
    service = service if isinstance(service, str) and service else "unknown_service"
    return attrs, service, encode(dict(sorted(attrs.items())))


@dataclass(slots=True)
class Rejections:
    """Items left out of a request and why, for the ``partial_success`` message."""

    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str) -> None:
        self.count += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def message(self, noun: str) -> str:
        if not self.count:
            return ""
        detail = "; ".join(f"{n} with {reason}" for reason, n in self.reasons.items())
        return f"{self.count} {noun} rejected: {detail}"


@dataclass(slots=True)
class TraceDelta:
    """What one request adds to a trace's summary row."""

    start_ns: int
    end_ns: int
    span_count: int
    error: bool
    root_service: str | None
    root_name: str | None
    booking_outcome: str | None


# a row of the spans table in storage.SPAN_COLUMNS order: trace_id, span_id, parent_span_id, service,
# name, kind, start_ns, end_ns, status_code, status_message, attributes, events, links, resource
# (index into DecodedSpans.resources until the writer swaps in the resource's row id), scope
SpanRow = tuple[str, str, str | None, str, str, int, int, int, int, str | None, str, str | None, str | None, int, str]


SPAN_WIDTH = 15
# parent_span_id, status_message, events, links: None in a span row, never '' (the decoder gives None
# for an empty status message, event list or link list), so the flat values bind them as '' (see
# storage.insert_rows for why) and span_rows can tell None back
SPAN_NULLABLE = (2, 9, 11, 12)


def flat_values(rows: Sequence[Sequence[Any]], width: int, empty_as_null: tuple[int, ...] = ()) -> list[Any]:
    """Rows of ``width`` values as one flat list, row after row, with '' for None in the
    ``empty_as_null`` columns (what :func:`storage.insert_rows` binds)."""
    values = list(chain.from_iterable(rows))
    for column in empty_as_null:
        values[column::width] = ["" if value is None else value for value in values[column::width]]
    return values


def span_values(rows: Sequence[SpanRow]) -> list[Any]:
    """The rows as one flat list of the values the spans INSERT binds: row after row, SPAN_WIDTH
    values each, with '' for None in the SPAN_NULLABLE columns."""
    return flat_values(rows, SPAN_WIDTH, SPAN_NULLABLE)


def span_rows(values: Sequence[Any]) -> list[SpanRow]:
    """The rows of flat span values (the inverse of :func:`span_values`)."""
    columns: list[Any] = [values[column::SPAN_WIDTH] for column in range(SPAN_WIDTH)]
    for column in SPAN_NULLABLE:
        columns[column] = [value or None for value in columns[column]]
    return list(zip(*columns, strict=True))


class DecodedSpans:
    """The valid spans of an export: their rows (or the same as flat ``values``: the decoding worker
    hands over only those, see :mod:`decode_pool`), the sampler's facts (one per row, in the same
    order), per-trace summary deltas, the resources the rows' resource column indexes, and what was
    rejected. Rows and values are each made from the other when first asked for."""

    __slots__ = ("_rows", "_values", "facts", "traces", "resources", "rejected")

    def __init__(
        self,
        rows: list[SpanRow] | None,
        facts: list[PackedFacts],
        traces: dict[str, TraceDelta],
        resources: list[str],
        rejected: Rejections,
        *,
        values: list[Any] | None = None,
    ) -> None:
        if rows is None and values is None:
            raise ValueError("DecodedSpans needs its rows or their values")
        self._rows, self._values = rows, values
        self.facts, self.traces, self.resources, self.rejected = facts, traces, resources, rejected

    @property
    def rows(self) -> list[SpanRow]:
        if self._rows is None:
            self._rows = span_rows(self._values or [])
        return self._rows

    @property
    def values(self) -> list[Any]:
        """The rows as :func:`span_values` (made once: the rows must not change afterwards)."""
        if self._values is None:
            self._values = span_values(self._rows or [])
        return self._values

    @property
    def count(self) -> int:
        """The number of spans."""
        if self._rows is not None:
            return len(self._rows)
        return len(self._values or []) // SPAN_WIDTH


def _span_problem(trace_id: bytes, span_id: bytes, parent: bytes) -> str | None:
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        return "an invalid trace_id (16 non-zero bytes expected)"
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        return "an invalid span_id (8 non-zero bytes expected)"
    if len(parent) not in (0, 8):
        return "an invalid parent_span_id (8 bytes or empty expected)"
    return None


def _events(events: Any, redact: bool) -> str:
    decoded = [
        {"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": attributes_of(e.attributes)} for e in events
    ]
    return _clean_json(decoded, compact(decoded)) if redact else compact(decoded)


def _links(links: Any, redact: bool) -> str:
    # the linked ids are ids, whatever digits they hold: only the attributes are looked through
    decoded = []
    for k in links:
        attributes = attributes_of(k.attributes)
        if redact and attributes:
            attributes = json.loads(_clean_json(attributes, compact(attributes)))
        decoded.append({"trace_id": k.trace_id.hex(), "span_id": k.span_id.hex(), "attributes": attributes})
    return compact(decoded)


def decode_spans(request: ExportTraceServiceRequest, redact: bool = True, *, facts: bool = True) -> DecodedSpans:
    """Rows, sampler facts and per-trace summary deltas of every valid span of the request.

    The loop runs for every span the store receives, hence the local names and the inlined steps.
    With ``redact`` (always, but in a control test) names, attributes, events, links and status
    messages are scrubbed of card numbers, e-mail addresses and secrets, whoever sent them.
    Without ``facts`` (the decoding worker, whose caller packs them from the rows' values with
    :func:`facts_of_values`) the facts are left empty.

    The rows of a trace share one trace id string, and the rows of a span name one name string: the
    worker's rows are pickled once per object, and the sampler holds the facts of every waiting span.
    """
    decoded = DecodedSpans([], [], {}, [], Rejections())
    rows = decoded.rows
    add_row = rows.append
    outcomes: list[Any] = []  # each row's booking.outcome attribute (None without one)
    add_outcome = outcomes.append
    plain_attributes, plain_json_, compact_ = _plain_attributes, plain_json, compact
    trace_ids: dict[bytes, str] = {}
    names: dict[str, str] = {}
    for resource_spans in request.resource_spans:
        _, service, resource_json = _resource(resource_spans.resource.attributes, redact)
        resource_index = len(decoded.resources)
        decoded.resources.append(resource_json)
        for scope_spans in resource_spans.scope_spans:
            scope = _clean_text(scope_spans.scope.name) if redact else scope_spans.scope.name
            for span in scope_spans.spans:
                raw_trace, raw_span, raw_parent = span.trace_id, span.span_id, span.parent_span_id
                if (
                    len(raw_trace) != 16
                    or len(raw_span) != 8
                    or (raw_parent and len(raw_parent) != 8)
                    or raw_trace == _ZERO_TRACE
                    or raw_span == _ZERO_SPAN
                ):
                    decoded.rejected.add(_span_problem(raw_trace, raw_span, raw_parent) or "invalid ids")
                    continue
                trace_id = trace_ids.get(raw_trace)
                if trace_id is None:
                    trace_id = trace_ids[raw_trace] = raw_trace.hex()
                attributes, plain = plain_attributes(span.attributes)
                add_outcome(attributes.get("booking.outcome"))
                status = span.status
                code = status.code
                if not 0 <= code <= 2:
                    code = 0
                kind = span.kind
                if not 0 <= kind <= 5:
                    kind = 0
                name = span.name
                name = names.setdefault(name, name)
                start = span.start_time_unix_nano
                end = span.end_time_unix_nano
                if end < start:  # a clock step must not give a negative duration
                    end = start
                events, links = span.events, span.links
                add_row(
                    (
                        trace_id,
                        raw_span.hex(),
                        raw_parent.hex() if raw_parent else None,
                        service,
                        name,
                        kind,
                        start,
                        end,
                        code,
                        status.message or None,
                        plain_json_(attributes) if plain else compact_(attributes),
                        _events(events, redact) if events else None,
                        _links(links, redact) if links else None,
                        resource_index,
                        scope,
                    )
                )
    if redact and rows:
        _redact_rows(rows, outcomes)
    decoded.traces = _trace_deltas(rows, outcomes)
    if facts:
        decoded.facts = facts_of(rows, decoded.resources)
    return decoded


def _redact_rows(rows: list[SpanRow], outcomes: list[Any]) -> None:
    """Scrub the name, status message and attributes of every row that holds something to scrub
    (replacing the row, and its booking outcome in ``outcomes``).

    A span's three texts are looked at together, joined by newlines; and first the texts of all the
    rows, joined by newlines too, in one look: a batch with nothing to scrub (nearly all of them) is
    done, at a fraction of the cost of a look per span. That one look finds whatever a look per span
    would: a newline stands where a span's text starts or ends, and to every pattern of the
    redaction a newline is what the start or the end of a text is (no word character, digit, hex
    digit, separator, "=" or "+"): no match is lost or made across it.

    A dirty row's attributes are read back from their JSON, which gives the decoded values again
    (strings, integers, booleans, None, finite floats, lists and objects); a dict holding only the
    first four is written alike by ``plain_json`` and ``compact``, so the cleaned text is the one the
    decoder would have written.
    """
    texts = [f"{row[4]}\n{row[9]}\n{row[10]}" for row in rows]
    if not needs_scrub_unremembered("\n".join(texts)):
        return
    for i, text in enumerate(texts):
        if not needs_scrub_unremembered(text):
            continue
        row = rows[i]
        attributes = _cleaned(json.loads(row[10]))
        outcomes[i] = attributes.get("booking.outcome")
        message = row[9]
        rows[i] = (
            *row[:4],
            _clean_text(row[4]),
            *row[5:9],
            _clean_text(message) if message else None,
            plain_json(attributes)
            if all(type(v) in _PLAIN_TYPES for v in attributes.values())
            else compact(attributes),
            *row[11:],
        )


def _trace_deltas(rows: list[SpanRow], outcomes: list[Any]) -> dict[str, TraceDelta]:
    """What the rows add to each trace's summary row: time range, span count, error, root, and the
    booking outcome (booking.create's, else the first span's that has one)."""
    traces: dict[str, TraceDelta] = {}
    get = traces.get
    for (trace_id, _, parent, service, name, _, start, end, code, *_), outcome in zip(rows, outcomes, strict=True):
        delta = get(trace_id)
        if delta is None:
            root = parent is None
            traces[trace_id] = TraceDelta(
                start,
                end,
                1,
                code == ERROR,
                service if root else None,
                name if root else None,
                None if outcome is None else str(outcome),
            )
            continue
        delta.span_count += 1
        if start < delta.start_ns:
            delta.start_ns = start
        if end > delta.end_ns:
            delta.end_ns = end
        if code == ERROR:
            delta.error = True
        if parent is None:
            delta.root_service, delta.root_name = service, name
        if outcome is not None and (delta.booking_outcome is None or name == "booking.create"):
            delta.booking_outcome = str(outcome)
    return traces


def facts_of(rows: list[SpanRow], resources: list[str]) -> list[PackedFacts]:
    """The sampler's packed facts of span rows (their resource column still an index into
    ``resources``), one per row in the same order."""
    kinds, codes = KINDS, STATUS_CODES
    return [(r[0], r[3], r[4], kinds[r[5]], codes[r[8]], r[6], r[7], r[10], resources[r[13]]) for r in rows]


def facts_of_values(values: list[Any], resources: list[str]) -> list[PackedFacts]:
    """``facts_of`` the rows of flat span values, column by column (no Python loop per span)."""
    w = SPAN_WIDTH
    return list(
        zip(
            values[0::w],
            values[3::w],
            values[4::w],
            map(KINDS.__getitem__, values[5::w]),
            map(STATUS_CODES.__getitem__, values[8::w]),
            values[6::w],
            values[7::w],
            values[10::w],
            map(resources.__getitem__, values[13::w]),
            strict=True,
        )
    )


# time_ns, observed_ns, service, severity_text, severity_number, body, trace_id, span_id, attributes,
# resource (index), scope
LogRow = tuple[int, int, str, str | None, int, str, str | None, str | None, str, int, str]


@dataclass(slots=True)
class DecodedLogs:
    rows: list[LogRow]
    resources: list[str]
    rejected: Rejections


def decode_logs(request: ExportLogsServiceRequest, redact: bool = True) -> DecodedLogs:
    decoded = DecodedLogs([], [], Rejections())
    for resource_logs in request.resource_logs:
        _, service, resource_json = _resource(resource_logs.resource.attributes, redact)
        resource_index = len(decoded.resources)
        decoded.resources.append(resource_json)
        for scope_logs in resource_logs.scope_logs:
            scope = _clean_text(scope_logs.scope.name) if redact else scope_logs.scope.name
            for record in scope_logs.log_records:
                trace_id, span_id = record.trace_id, record.span_id
                if len(trace_id) not in (0, 16):
                    decoded.rejected.add("an invalid trace_id (16 bytes or empty expected)")
                    continue
                if len(span_id) not in (0, 8):
                    decoded.rejected.add("an invalid span_id (8 bytes or empty expected)")
                    continue
                observed = record.observed_time_unix_nano
                body, attributes = any_value(record.body), attributes_of(record.attributes)
                body_json, attributes_json = compact(body), compact(attributes)
                if redact:
                    body_json, attributes_json = _clean_json(body, body_json), _clean_json(attributes, attributes_json)
                decoded.rows.append(
                    (
                        record.time_unix_nano or observed,
                        observed,
                        service,
                        (_clean_text(record.severity_text) if redact else record.severity_text) or None,
                        int(record.severity_number),
                        body_json,
                        trace_id.hex() if any(trace_id) else None,
                        span_id.hex() if any(span_id) else None,
                        attributes_json,
                        resource_index,
                        scope,
                    )
                )
    return decoded


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One metric time series, which every point belongs to."""

    name: str
    service: str
    instance: str  # service.instance.id: two processes' cumulative counters are two series
    type: str  # sum | gauge | histogram
    unit: str
    description: str
    temporality: int  # 0 none (gauge), 1 delta, 2 cumulative
    monotonic: bool
    attributes: str  # compact JSON, keys sorted


# series (index into DecodedMetrics.series), time_ns, start_ns, value, count, sum, bucket_counts, explicit_bounds
PointRow = tuple[int, int, int, float | None, int | None, float | None, str | None, str | None]


@dataclass(slots=True)
class DecodedMetrics:
    series: list[SeriesKey]
    points: list[PointRow]
    rejected: Rejections


def _finite(number: float) -> float | None:
    return number if math.isfinite(number) else None


def _exponential_buckets(point: Any) -> tuple[list[int], list[float]]:
    """An exponential histogram's buckets as explicit bounds (the negative range folds into <= 0)."""
    base = 2.0 ** (2.0**-point.scale)
    offset = point.positive.offset
    positive = list(point.positive.bucket_counts)
    try:
        bounds = [0.0, *(base ** (offset + i + 1) for i in range(len(positive)))]
    except OverflowError:
        return [], []
    return [sum(point.negative.bucket_counts) + point.zero_count, *positive, 0], bounds


def _point_values(data_kind: str, point: Any, rejected: Rejections) -> tuple[Any, ...] | None:
    """value, count, sum, bucket_counts, explicit_bounds of one point (None when it is invalid)."""
    if data_kind in ("gauge", "sum"):
        which = point.WhichOneof("value")
        if which is None:
            rejected.add("no value")
            return None
        return _finite(float(getattr(point, which))), None, None, None, None
    if data_kind == "histogram":
        counts, bounds = list(point.bucket_counts), list(point.explicit_bounds)
        if counts and len(counts) != len(bounds) + 1:
            rejected.add("bucket_counts not matching explicit_bounds")
            return None
        return None, point.count, _finite(point.sum), compact(counts), compact(bounds)
    if data_kind == "exponential_histogram":
        counts, bounds = _exponential_buckets(point)
        return None, point.count, _finite(point.sum), compact(counts), compact(bounds)
    # summary: its quantiles have no bucket form; count and sum are kept
    return None, point.count, _finite(point.sum), None, None


def decode_metrics(request: ExportMetricsServiceRequest, redact: bool = True) -> DecodedMetrics:
    decoded = DecodedMetrics([], [], Rejections())
    index: dict[SeriesKey, int] = {}
    for resource_metrics in request.resource_metrics:
        resource_attrs, service, _ = _resource(resource_metrics.resource.attributes, redact)
        instance = str(resource_attrs.get("service.instance.id", ""))
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                data_kind = metric.WhichOneof("data")
                if data_kind is None:
                    continue
                data = getattr(metric, data_kind)
                kind = data_kind if data_kind in ("gauge", "sum") else "histogram"
                # summaries are cumulative by definition; gauges have no temporality
                temporality = 2 if data_kind == "summary" else int(getattr(data, "aggregation_temporality", 0))
                monotonic = bool(getattr(data, "is_monotonic", False))
                name, unit, description = metric.name, metric.unit, metric.description
                if redact:  # once per metric, not per point
                    name, unit, description = _clean_text(name), _clean_text(unit), _clean_text(description)
                for point in data.data_points:
                    values = _point_values(data_kind, point, decoded.rejected)
                    if values is None:
                        continue
                    point_attrs = dict(sorted(attributes_of(point.attributes).items()))
                    attrs = compact(point_attrs)
                    if redact:
                        attrs = _clean_json(point_attrs, attrs)
                    key = SeriesKey(
                        name,
                        service,
                        instance,
                        kind,
                        unit,
                        description,
                        temporality,
                        monotonic,
                        attrs,
                    )
                    series = index.get(key)
                    if series is None:
                        series = index[key] = len(decoded.series)
                        decoded.series.append(key)
                    decoded.points.append((series, point.time_unix_nano, point.start_time_unix_nano, *values))
    return decoded


Decoded = DecodedSpans | DecodedLogs | DecodedMetrics


def decode_export(
    signal: str, body: bytes, content_encoding: str | None, encoding: str, redact: bool = True
) -> Decoded:
    """One export request (``signal``: traces, metrics or logs) as rows, redacted unless ``redact`` is
    off (a control test); raises OtlpError for a body the store cannot accept (400, 413, 415)."""
    message = parse_request(REQUESTS[signal], decompress(body, content_encoding), encoding)
    if signal == "traces":
        return decode_spans(message, redact)
    if signal == "logs":
        return decode_logs(message, redact)
    return decode_metrics(message, redact)
