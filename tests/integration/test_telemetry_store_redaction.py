"""The telemetry store redacts what it receives before storing it, whoever sent it: a sender with no
Bookline redaction in front of its exporter (a Collector forwarding anything, a careless service)
cannot put a card number or an e-mail address into telemetry.db, in OTLP protobuf or OTLP JSON, and
the store's own card scan then finds nothing. Each place a sender chooses text holds a card number
of its own, so the control test (the store's redaction off) shows every one of them stored where it
was put, and the card scan finding them: each guard is proven to matter. The trace and span ids,
even ids made only of digits, are stored as sent either way."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList

from bookline.config import Settings
from bookline.redaction import REDACTED, luhn_valid
from bookline.services.telemetry.api import build_app
from bookline.telemetry import setup_telemetry
from support.otlp import INGEST, INGEST_TOKEN, kv
from support.serving import served

ADMIN_TOKEN = "store-redaction-admin-token"
KEEP_ALL = "decision_wait: 1s\npolicies:\n  - {name: all, type: always_sample}\n"
EMAIL = "guest@example.com"
# ids of nothing but digits, which pass the Luhn check: ids all the same, never redacted
TRACE_ID, SPAN_ID, LINKED_SPAN_ID = "4111111111111111" + "5105105105105100", "4242424242424242", "5555555555554444"


def card(n: int) -> str:
    """A Luhn-valid sixteen-digit number of its own for the n-th place."""
    stem = f"4000{n:011d}"
    return stem + next(d for d in "0123456789" if luhn_valid(stem + d))


PLACES = (
    "span name", "span attribute", "span attribute joined to a word", "array item", "attribute key",
    "nested kvlist", "event name", "event attribute", "link attribute", "status message",
    "span resource attribute", "span scope name", "log body", "log body kvlist", "log attribute",
    "log severity", "log resource attribute", "log service name", "log scope name", "metric point attribute",
    "metric name", "metric unit", "metric description", "metric instance",
)  # fmt: skip
CARDS = {place: card(i) for i, place in enumerate(PLACES)}


def grouped(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


# each number as it is written where it is put (the status message groups its digits by four)
WRITTEN = {**CARDS, "status message": grouped(CARDS["status message"])}


def traces() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(
        [kv("service.name", "careless-sender"), kv("host.owner", CARDS["span resource attribute"])]
    )
    scope = resource.scope_spans.add()
    scope.scope.name = f"lib-{CARDS['span scope name']}"
    now = time.time_ns()
    span = scope.spans.add(
        trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_ID), name=f"charge {CARDS['span name']}",
        start_time_unix_nano=now - 1000, end_time_unix_nano=now,
    )  # fmt: skip
    span.attributes.extend([
        kv("card.number", CARDS["span attribute"]),
        kv("user", f"u-{CARDS['span attribute joined to a word']}"),
        kv("cards", ["ok", CARDS["array item"]]),
        kv(f"note {CARDS['attribute key']}", "the key holds it"),
        KeyValue(key="nested", value=AnyValue(kvlist_value=KeyValueList(
            values=[kv("deeper", [f"guest_{CARDS['nested kvlist']}"]), kv("email", EMAIL)]
        ))),
    ])  # fmt: skip
    span.status.code, span.status.message = 2, f"declined {grouped(CARDS['status message'])}"
    event = span.events.add(name=f"tried x{CARDS['event name']}", time_unix_nano=now)
    event.attributes.append(kv("card", f"{CARDS['event attribute']}-confirmed"))
    link = span.links.add(trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(LINKED_SPAN_ID))
    link.attributes.append(kv("why", CARDS["link attribute"]))
    return request


def logs() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.extend([
        kv("service.name", f"careless-sender-{CARDS['log service name']}"),
        kv("host.owner", CARDS["log resource attribute"]),
    ])  # fmt: skip
    scope = resource.scope_logs.add()
    scope.scope.name = f"lib_{CARDS['log scope name']}"
    now = time.time_ns()
    record = scope.log_records.add(time_unix_nano=now, trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_ID))
    record.body.string_value = f"paid with {CARDS['log body']} by {EMAIL}"
    record.severity_text = CARDS["log severity"]
    record.attributes.append(kv("card", f"{CARDS['log attribute']}-z"))
    nested = scope.log_records.add(time_unix_nano=now)
    nested.body.kvlist_value.values.append(kv("card", CARDS["log body kvlist"]))
    return request


def metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.extend(
        [kv("service.name", "careless-sender"), kv("service.instance.id", f"i-{CARDS['metric instance']}")]
    )
    metric = resource.scope_metrics.add().metrics.add(
        name=f"charges.{CARDS['metric name']}",
        unit=f"{{card {CARDS['metric unit']}}}",
        description=f"charged to {CARDS['metric description']}",
    )
    point = metric.gauge.data_points.add(time_unix_nano=time.time_ns(), as_int=1)
    point.attributes.append(kv("card", CARDS["metric point attribute"]))
    return request


def _hex_ids(node: Any) -> Any:
    """OTLP JSON spells ids in hex where the protobuf JSON mapping has base64."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def encoded(request: Message, encoding: str) -> tuple[bytes, str]:
    if encoding == "protobuf":
        return request.SerializeToString(), "application/x-protobuf"
    document = _hex_ids(json_format.MessageToDict(request, use_integers_for_enums=True))
    return json.dumps(document).encode(), "application/json"


def stored_text(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / "telemetry.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))
    finally:
        conn.close()


def stored_ids(data_dir: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    with sqlite3.connect(data_dir / "telemetry.db") as conn:
        spans = conn.execute("SELECT trace_id, span_id FROM spans").fetchall()
        log_ids = conn.execute("SELECT trace_id, span_id FROM logs WHERE trace_id IS NOT NULL").fetchall()
    return spans, log_ids


async def export_everything(settings: Settings, encoding: str) -> tuple[str, dict[str, Any]]:
    """Send the three exports; the text of every stored row and the store's card scan."""
    async with served(build_app(settings, setup_telemetry("telemetry", settings, export=False))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for path, request in (("/v1/traces", traces()), ("/v1/logs", logs()), ("/v1/metrics", metrics())):
                body, content_type = encoded(request, encoding)
                answer = await http.post(path, content=body, headers={**INGEST, "content-type": content_type})
                assert answer.status_code == 200, answer.text
                assert "rejected" not in answer.text, answer.text
            scan = await http.get("/admin/card-scan", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert scan.status_code == 200, scan.text
    return stored_text(settings.data_dir), scan.json()


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(KEEP_ALL)
    return Settings(
        data_dir=tmp_path,
        sampling_policy_file=policy,
        telemetry_ingest_token=INGEST_TOKEN,
        admin_token=ADMIN_TOKEN,
        **overrides,
    )


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_whatever_a_sender_exports_is_stored_redacted_and_the_card_scan_finds_nothing(
    tmp_path: Path, encoding: str
):
    stored, scan = await export_everything(_settings(tmp_path), encoding)

    assert "careless-sender" in stored and REDACTED in stored
    assert [place for place, number in CARDS.items() if number in stored or WRITTEN[place] in stored] == []
    assert EMAIL not in stored
    assert scan["hits"] == [] and scan["rows_scanned"] > 0
    # the ids are ids: stored as sent, all digits though they are
    spans, log_ids = stored_ids(tmp_path)
    assert spans == [(TRACE_ID, SPAN_ID)] and log_ids == [(TRACE_ID, SPAN_ID)]
    assert f'"span_id":"{LINKED_SPAN_ID}"' in stored


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_control_without_the_stores_redaction_every_place_keeps_its_card_and_the_scan_finds_them(
    tmp_path: Path, encoding: str
):
    stored, scan = await export_everything(_settings(tmp_path, unsafe_disable_redaction=True), encoding)

    missing = [place for place, written in WRITTEN.items() if written not in stored]
    assert missing == [], "redaction is off, yet these places stored no card: the test cannot see them"
    assert EMAIL in stored
    found = {(hit["table"], hit["column"]) for hit in scan["hits"]}
    assert found == {
        ("spans", "name"), ("spans", "attributes"), ("spans", "events"), ("spans", "links"),
        ("spans", "status_message"), ("spans", "scope"), ("logs", "service"), ("logs", "body"),
        ("logs", "attributes"), ("logs", "severity_text"), ("logs", "scope"), ("metric_series", "name"),
        ("metric_series", "instance"), ("metric_series", "unit"), ("metric_series", "description"),
        ("metric_series", "attributes"), ("resources", "attributes"),
    }  # fmt: skip
    assert not [number for number in CARDS.values() if number in json.dumps(scan)]
