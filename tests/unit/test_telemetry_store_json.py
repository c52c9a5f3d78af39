"""The store writes span and resource attributes with orjson when every value is a string, an integer,
a boolean or None: the text must be exactly what the json module writes (``compact``), which the
redaction reads and the attribute filters compare."""

from __future__ import annotations

import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from bookline.services.telemetry.decoding import compact, decode_spans, plain_json


def test_plain_attributes_are_written_as_the_json_module_writes_them():
    every_character = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(every_character), 4096):
        text = "".join(every_character[start : start + 4096])
        value = {text: text, "n": -(2**63), "m": 2**64 - 1, "t": True, "f": False, "none": None, "": ""}
        assert plain_json(value) == compact(value)


def test_what_orjson_cannot_write_falls_back_to_the_json_module():
    for value in ({"lone": "\ud800"}, {"big": 2**70}):
        assert plain_json(value) == compact(value)


def test_span_attributes_with_floats_or_lists_keep_the_json_module_text():
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="s", start_time_unix_nano=1, end_time_unix_nano=2)
    )
    span.attributes.extend(
        [
            KeyValue(key="big", value=AnyValue(double_value=1e16)),
            KeyValue(key="small", value=AnyValue(double_value=1e-7)),
            KeyValue(key="list", value=AnyValue(array_value=ArrayValue(values=[AnyValue(double_value=2.5e20)]))),
            KeyValue(key="text", value=AnyValue(string_value="caf\u00e9\n")),
        ]
    )
    [row] = decode_spans(request).rows
    assert row[10] == '{"big":1e+16,"small":1e-07,"list":[2.5e+20],"text":"caf\u00e9\\n"}'
