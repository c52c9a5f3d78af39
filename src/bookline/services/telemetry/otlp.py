"""OTLP/HTTP on the wire: what an export request's headers and body may be, and the answers the
OTLP/HTTP specification requires.

Requests are parsed with the official ``opentelemetry-proto`` messages: ``ParseFromString`` for
protobuf, and ``google.protobuf.json_format`` for OTLP JSON once its one deviation from the standard
protobuf JSON mapping is undone (trace and span ids are hex in OTLP JSON, base64 in protobuf JSON).
A success is 200 with an ``Export*ServiceResponse`` in the request's encoding, carrying
``partial_success`` when some items were rejected; a failure is 4xx with a ``google.rpc.Status``.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bookline.redaction import scrub

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# "application/protobuf" is what some exporters send; it names the same encoding
_MEDIA_TYPES = {"application/x-protobuf": PROTOBUF, "application/protobuf": PROTOBUF, "application/json": JSON}

MAX_BODY_BYTES = 16 * 1024 * 1024  # on the wire; the SDK sends at most 512 spans (well under 1 MB) at once
MAX_INFLATED_BYTES = 64 * 1024 * 1024  # after gzip: a small body must not inflate into gigabytes

_ID_KEYS = frozenset({"traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"})
# an id that is not hex becomes one byte, so the length check rejects its item instead of the request
_INVALID_ID = base64.b64encode(b"\xff").decode()

M = TypeVar("M", bound=Message)

REQUESTS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
_RESPONSES: dict[str, tuple[type[Message], type[Message], str]] = {
    "traces": (ExportTraceServiceResponse, ExportTracePartialSuccess, "rejected_spans"),
    "metrics": (ExportMetricsServiceResponse, ExportMetricsPartialSuccess, "rejected_data_points"),
    "logs": (ExportLogsServiceResponse, ExportLogsPartialSuccess, "rejected_log_records"),
}
# google.rpc.Code for each HTTP failure (the spec lets Status.code be left out; a client that reads it
# gets the nearest gRPC meaning)
_RPC_CODES = {400: 3, 413: 8, 415: 3, 500: 13, 503: 14}


class OtlpError(Exception):
    """The request as a whole cannot be accepted; ``status`` is the HTTP answer (400, 413, 415)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type[OtlpError], tuple[int, str, str]]:
        # raised in the decoding worker process and re-raised in the store's: keep all three fields
        return (OtlpError, (self.status, self.code, self.message))


def media_type(content_type: str | None) -> str:
    """The encoding named by a Content-Type header (parameters such as charset are ignored)."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return _MEDIA_TYPES[base]
    except KeyError:
        raise OtlpError(
            415, "unsupported_media_type", f"unsupported content type {base or '(none)'!r}: use {PROTOBUF} or {JSON}"
        ) from None


def decompress(body: bytes, content_encoding: str | None, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """The body without its Content-Encoding, refusing to inflate past ``limit`` bytes."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise OtlpError(415, "unsupported_encoding", f"unsupported content encoding {encoding!r}: use gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise OtlpError(400, "undecodable_body", "the body is not valid gzip") from None
    if len(data) > limit:
        raise OtlpError(413, "body_too_large", f"the decompressed body exceeds {limit} bytes")
    if not inflater.eof:
        raise OtlpError(400, "undecodable_body", "the gzip body is truncated")
    return data


def _hex_ids_to_base64(node: Any) -> Any:
    """Rewrite OTLP JSON's hex ids into the base64 that the protobuf JSON parser expects.

    OTLP JSON has no user-chosen object keys (attributes are lists of {key, value}), so every
    ``traceId``/``spanId``/``parentSpanId`` key met while walking the document is an id field.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    node[key] = _INVALID_ID
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    return node


def parse_request(message_type: type[M], data: bytes, encoding: str) -> M:
    """One Export*ServiceRequest from its protobuf or OTLP JSON bytes; 400 when undecodable."""
    message = message_type()
    if encoding == PROTOBUF:
        try:
            message.ParseFromString(data)
        except DecodeError:
            raise OtlpError(400, "undecodable_body", "the body is not a valid protobuf export request") from None
        return message
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise OtlpError(400, "undecodable_body", "the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise OtlpError(400, "undecodable_body", "the body is not an OTLP JSON export request (an object is expected)")
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), message, ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        raise OtlpError(400, "undecodable_body", f"the body is not a valid OTLP JSON export request: {exc}") from None
    return message


def export_response(signal: str, rejected: int, message: str, encoding: str) -> bytes:
    """The Export*ServiceResponse of a request; ``partial_success`` only when something was rejected."""
    response_type, partial_type, count_field = _RESPONSES[signal]
    response = response_type()
    if rejected:
        response.partial_success.CopyFrom(partial_type(**{count_field: rejected, "error_message": message}))
    if encoding == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def failure_body(status: int, code: str, message: str, encoding: str, trace_id: str | None) -> bytes:
    """The body of a 4xx/5xx answer to an export: a ``google.rpc.Status`` in the request's encoding.

    In JSON the Status fields sit beside Bookline's error envelope, so OTLP clients and the
    project's own tools read the same answer.
    """
    rpc_code = _RPC_CODES.get(status, 2)
    # a parser's message may quote the offending value, and that value could be a card number
    message = scrub(message)
    if encoding == PROTOBUF:
        return status_pb2.Status(code=rpc_code, message=message).SerializeToString()
    return json.dumps(
        {"code": rpc_code, "message": message, "error": {"code": code, "message": message}, "trace_id": trace_id}
    ).encode()
