"""payment-gateway on PostgreSQL (its own schema): migrations, authorize and capture in one
transaction each, and the unique key that makes a concurrent duplicate wait for the first request's
commit (and replay its answer) or rollback (and do the work itself). Skipped when no server answers,
unless CI=true."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import date
from uuid import uuid4

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.config import Settings
from bookline.services.gateway.api import build_app
from bookline.services.gateway.handlers import KeyedRequest
from bookline.telemetry import setup_telemetry
from support.booking import caller_headers, rsv_id
from support.postgres import PG_URL, require_postgres_async
from support.spans import transactions

pytestmark = pytest.mark.postgres

DSN = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE_URL = PG_URL


CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": date.today().year + 3, "cvc": "123"}


@dataclass
class Gateway:
    http: httpx.AsyncClient
    spans: InMemorySpanExporter
    schema: str


@pytest.fixture
async def gateway(tmp_path):
    await require_postgres_async()
    settings = Settings(
        data_dir=tmp_path,
        database_url=DATABASE_URL,
        db_schema_prefix=f"t{uuid4().hex[:8]}_",
        gateway_latency_ms=200,
    )
    schema = settings.schema_of("payment-gateway")
    spans = InMemorySpanExporter()
    telemetry = setup_telemetry("payment-gateway", settings, span_exporter=spans)
    app = build_app(settings, telemetry)
    try:
        async with app.router.lifespan_context(app):
            caller = caller_headers(settings, "booking-service", "payment-gateway")
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=caller
            ) as client:
                yield Gateway(client, spans, schema)
    finally:
        telemetry.shutdown()
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture
def http(gateway: Gateway) -> httpx.AsyncClient:
    return gateway.http


async def test_authorize_and_capture_on_postgresql(http):
    token = (await http.post("/v1/tokens", json=CARD)).json()["token"]
    body = {"token": token, "amount_minor": 30_000, "currency": "EUR", "reservation_id": rsv_id("pg")}
    key = {"Idempotency-Key": "pay-pg"}

    answers = await asyncio.gather(
        http.post("/v1/authorizations", json=body, headers=key),
        http.post("/v1/authorizations", json=body, headers=key),
    )
    assert [a.status_code for a in answers] == [201, 201]
    auth = answers[0].json()
    assert answers[1].json() == auth
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


async def test_authorize_and_capture_are_one_write_transaction_each_on_postgresql(gateway: Gateway):
    http = gateway.http
    token = (await http.post("/v1/tokens", json=CARD)).json()["token"]
    body = {"token": token, "amount_minor": 30_000, "currency": "EUR", "reservation_id": rsv_id("pg")}
    gateway.spans.clear()
    auth = (await http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-pg"})).json()
    captured = await http.post(f"/v1/authorizations/{auth['id']}/capture", headers={"Idempotency-Key": "cap-pg"})
    assert captured.status_code == 200
    assert transactions(gateway.spans) == [
        ("gateway.authorize", ("INSERT", "SELECT", "INSERT", "UPDATE")),
        ("gateway.capture", ("INSERT", "SELECT", "UPDATE", "UPDATE")),
    ]


async def _open_claim(gateway: Gateway, body: dict, key: str) -> asyncpg.Connection:
    """A connection with an open transaction that took ``key`` for ``body``, as a first request does."""
    request = KeyedRequest.of(key, "authorize", **body)
    conn = await asyncpg.connect(DSN)
    await conn.execute("BEGIN")
    await conn.execute(
        f'INSERT INTO "{gateway.schema}".idempotency_keys ("key", operation, request_hash, created_at) '
        "VALUES ($1, $2, $3, 1.0)",
        request.key,
        request.operation,
        request.request_hash,
    )
    return conn


async def test_a_duplicate_waits_for_the_uncommitted_first_request_and_replays_its_answer(gateway: Gateway):
    http = gateway.http
    token = (await http.post("/v1/tokens", json=CARD)).json()["token"]
    body = {"token": token, "amount_minor": 30_000, "currency": "EUR", "reservation_id": rsv_id("pg")}
    earlier = (await http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-1"})).json()

    first = await _open_claim(gateway, body, "pay-2")
    try:
        duplicate = asyncio.create_task(
            http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-2"})
        )
        await asyncio.sleep(0.8)  # past the 200 ms latency: its insert of the key now waits
        assert not duplicate.done()
        # the first request's reply (an earlier answer stands in for it), then its commit
        await first.execute(
            f'UPDATE "{gateway.schema}".idempotency_keys SET response_status = 201, response_body = $1 '
            "WHERE \"key\" = 'pay-2'",
            json.dumps(earlier),
        )
        await first.execute("COMMIT")
        answer = await asyncio.wait_for(duplicate, 10)
    finally:
        await first.close()
    assert (answer.status_code, answer.json()) == (201, earlier)
    ledger = (await http.get("/v1/ledger", params={"reservation_id": rsv_id("pg")})).json()
    assert len(ledger["authorizations"]) == 1


async def test_a_duplicate_of_a_first_request_that_rolls_back_does_the_work(gateway: Gateway):
    http = gateway.http
    token = (await http.post("/v1/tokens", json=CARD)).json()["token"]
    body = {"token": token, "amount_minor": 30_000, "currency": "EUR", "reservation_id": rsv_id("pg")}

    first = await _open_claim(gateway, body, "pay-1")
    try:
        duplicate = asyncio.create_task(
            http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-1"})
        )
        await asyncio.sleep(0.8)
        assert not duplicate.done()
        await first.execute("ROLLBACK")  # the first request failed (a 5xx): it leaves nothing
        answer = await asyncio.wait_for(duplicate, 10)
    finally:
        await first.close()
    assert answer.status_code == 201
    ledger = (await http.get("/v1/ledger", params={"reservation_id": rsv_id("pg")})).json()
    assert [a["id"] for a in ledger["authorizations"]] == [answer.json()["id"]]
