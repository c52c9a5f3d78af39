"""Building OTLP protobuf messages by hand in tests of the telemetry store."""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue


def kv(key: str, value: object) -> KeyValue:
    """An OTLP attribute of the type of ``value`` (bool, int, float, list, else string)."""
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        return KeyValue(key=key, value=AnyValue(array_value=ArrayValue(values=[kv("", v).value for v in value])))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


# the telemetry store takes an export only from an authenticated sender: tests that export by hand
# (or with the SDK's exporters) present this ingest token, which the stores they start are given
INGEST_TOKEN = "test-ingest-token"
INGEST = {"authorization": f"Bearer {INGEST_TOKEN}"}
