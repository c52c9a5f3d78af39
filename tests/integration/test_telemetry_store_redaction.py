"""The telemetry store redacts what it receives before storing it, whoever sent it: a sender with no
Bookline redaction in front of its exporter (a Collector forwarding anything, a careless service)
cannot put a card number or an e-mail address into telemetry.db. The control test turns the store's
redaction off and finds every one of them stored."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList

from bookline.config import Settings
from bookline.services.telemetry.api import build_app
from bookline.telemetry import setup_telemetry
from support.otlp import INGEST, INGEST_TOKEN, kv
from support.serving import served

CARD, GLUED, EMAIL = "4111111111111111", "u-5105105105105100", "guest@example.com"
SECRETS = (CARD, "5105105105105100", EMAIL)
KEEP_ALL = "decision_wait: 1s\npolicies:\n  - {name: all, type: always_sample}\n"


def traces() -> bytes:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend([kv("service.name", "careless-sender"), kv("host.owner", EMAIL)])
    scope = resource.scope_spans.add()
    now = time.time_ns()
    span = scope.spans.add(
        trace_id=os.urandom(16), span_id=os.urandom(8), name=f"charge {CARD}",
        start_time_unix_nano=now - 1000, end_time_unix_nano=now,
    )  # fmt: skip
    span.attributes.extend([
        kv("card.number", CARD), kv("user", GLUED), kv("cards", [CARD, "ok"]), kv(f"note {CARD}", "key holds it"),
        KeyValue(key="nested", value=AnyValue(kvlist_value=KeyValueList(values=[kv("email", EMAIL)]))),
    ])  # fmt: skip
    span.status.code, span.status.message = 2, f"declined {CARD}"
    event = span.events.add(name=f"tried {GLUED}", time_unix_nano=now)
    event.attributes.append(kv("to", EMAIL))
    link = span.links.add(trace_id=os.urandom(16), span_id=os.urandom(8))
    link.attributes.append(kv("why", CARD))
    return request.SerializeToString()


def logs() -> bytes:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.append(kv("service.name", "careless-sender"))
    record = resource.scope_logs.add().log_records.add(time_unix_nano=time.time_ns())
    record.body.string_value = f"paid with {CARD} by {EMAIL}"
    record.attributes.append(kv("card", GLUED))
    return request.SerializeToString()


def metrics() -> bytes:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.append(kv("service.name", "careless-sender"))
    metric = resource.scope_metrics.add().metrics.add(name="charges")
    point = metric.gauge.data_points.add(time_unix_nano=time.time_ns(), as_int=1)
    point.attributes.append(kv("card", CARD))
    return request.SerializeToString()


def stored_text(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / "telemetry.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))
    finally:
        conn.close()


async def export_everything(settings: Settings) -> str:
    async with served(build_app(settings, setup_telemetry("telemetry", settings, export=False))) as url:
        async with httpx.AsyncClient(
            base_url=url, headers={**INGEST, "content-type": "application/x-protobuf"}
        ) as http:
            for path, body in (("/v1/traces", traces()), ("/v1/logs", logs()), ("/v1/metrics", metrics())):
                answer = await http.post(path, content=body)
                assert answer.status_code == 200, answer.text
    return stored_text(settings.data_dir)


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    policy = tmp_path / "policy.yaml"
    policy.write_text(KEEP_ALL)
    return Settings(data_dir=tmp_path, sampling_policy_file=policy, telemetry_ingest_token=INGEST_TOKEN, **overrides)


async def test_whatever_a_sender_exports_is_stored_redacted(tmp_path: Path):
    stored = await export_everything(_settings(tmp_path))
    assert "careless-sender" in stored and "[REDACTED]" in stored
    for secret in SECRETS:
        assert secret not in stored, secret


@pytest.mark.parametrize("secret", SECRETS)
async def test_control_without_the_stores_redaction_every_secret_is_stored(tmp_path: Path, secret: str):
    stored = await export_everything(_settings(tmp_path, unsafe_disable_redaction=True))
    assert secret in stored, "redaction is off, yet nothing was stored: the test cannot see it"
