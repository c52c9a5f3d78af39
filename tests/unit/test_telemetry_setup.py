"""Which instrumentation traces a service's requests: Bookline's lean middleware by default, the
contrib one in the stock set-up (what bench/bookings.py compares) and when headers are to be recorded."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline import http_tracing
from bookline.config import Settings
from bookline.telemetry import setup_telemetry


async def _server_span_scope(tmp_path, setup: str) -> str:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(
        "pricing-engine", Settings(data_dir=tmp_path, telemetry_setup=setup), span_exporter=exporter, export=False
    )
    app = FastAPI()

    @app.get("/quotes/{quote_id}")
    async def quote(quote_id: str) -> dict:
        return {"quote_id": quote_id}

    telemetry.instrument_app(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pricing") as client:
        assert (await client.get("/quotes/q_1")).status_code == 200
    (server,) = [s for s in exporter.get_finished_spans() if s.name == "GET /quotes/{quote_id}"]
    return server.instrumentation_scope.name


async def test_bookline_traces_requests_with_its_lean_middleware(tmp_path):
    assert await _server_span_scope(tmp_path, "bookline") == http_tracing.SCOPE_NAME


async def test_the_stock_set_up_traces_them_with_the_contrib_instrumentation(tmp_path):
    assert (await _server_span_scope(tmp_path, "stock")).startswith("opentelemetry.instrumentation")


async def test_recording_headers_falls_back_to_the_contrib_instrumentation(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "x-request-id")
    assert (await _server_span_scope(tmp_path, "bookline")).startswith("opentelemetry.instrumentation")
