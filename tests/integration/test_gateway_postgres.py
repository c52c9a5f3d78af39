"""payment-gateway on PostgreSQL (its own schema): migrations, authorize and capture, and the unique
key that turns a concurrent duplicate away. Skipped when no server answers, unless CI=true."""

from __future__ import annotations

import asyncio
from datetime import date
from uuid import uuid4

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.config import Settings
from bookline.services.gateway.api import build_app
from bookline.telemetry import setup_telemetry
from support.booking import caller_headers, rsv_id
from support.postgres import PG_URL, require_postgres_async

pytestmark = pytest.mark.postgres

DSN = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE_URL = PG_URL


@pytest.fixture
async def http(tmp_path):
    await require_postgres_async()
    settings = Settings(
        data_dir=tmp_path,
        database_url=DATABASE_URL,
        db_schema_prefix=f"t{uuid4().hex[:8]}_",
        gateway_latency_ms=200,
    )
    schema = settings.schema_of("payment-gateway")
    telemetry = setup_telemetry("payment-gateway", settings, span_exporter=InMemorySpanExporter())
    app = build_app(settings, telemetry)
    try:
        async with app.router.lifespan_context(app):
            caller = caller_headers(settings, "booking-service", "payment-gateway")
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=caller
            ) as client:
                yield client
    finally:
        telemetry.shutdown()
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_authorize_and_capture_on_postgresql(http):
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": date.today().year + 3, "cvc": "123"}
    token = (await http.post("/v1/tokens", json=card)).json()["token"]
    body = {"token": token, "amount_minor": 30_000, "currency": "EUR", "reservation_id": rsv_id("pg")}
    key = {"Idempotency-Key": "pay-pg"}

    answers = await asyncio.gather(
        http.post("/v1/authorizations", json=body, headers=key),
        http.post("/v1/authorizations", json=body, headers=key),
    )
    assert sorted(a.status_code for a in answers) == [201, 409]
    auth = next(a for a in answers if a.status_code == 201).json()
    replay = await http.post("/v1/authorizations", json=body, headers=key)
    assert replay.json() == auth

    captured = await http.post(f"/v1/authorizations/{auth['id']}/capture", headers={"Idempotency-Key": "cap-pg"})
    assert (captured.status_code, captured.json()["status"]) == (200, "captured")
    ledger = (await http.get("/v1/ledger", params={"reservation_id": rsv_id("pg")})).json()
    assert (len(ledger["authorizations"]), ledger["authorized_minor"], ledger["captured_minor"]) == (
        1,
        30_000,
        30_000,
    )
