"""GatewayClient against the gateway served by uvicorn on a real local port: every method, declines
and failures as domain errors, and the timeout of the slow card resolved by the idempotency key."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import date

import pytest
import uvicorn
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.auth.provision import provision_keys
from bookline.auth.services import ServiceCredentials
from bookline.config import Settings
from bookline.domain.errors import (
    BooklineError,
    DependencyFailed,
    DependencyTimeout,
    PaymentDeclined,
)
from bookline.services.gateway.api import build_app
from bookline.services.gateway.client import GatewayClient
from bookline.telemetry import setup_telemetry
from support.booking import rsv_id

EXP_YEAR = date.today().year + 3


@asynccontextmanager
async def served_gateway(tmp_path, **overrides):
    settings = Settings(data_dir=tmp_path, **overrides)
    telemetry = setup_telemetry("payment-gateway", settings, span_exporter=InMemorySpanExporter())
    server = uvicorn.Server(
        uvicorn.Config(build_app(settings, telemetry), host="127.0.0.1", port=0, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    provision_keys(settings)
    credentials = ServiceCredentials.of("booking-service", settings)
    client = GatewayClient(f"http://127.0.0.1:{port}", telemetry, timeout=5.0, credentials=credentials)
    try:
        yield client
    finally:
        await client.aclose()
        server.should_exit = True
        await serving
        telemetry.shutdown()


@pytest.fixture
async def client(tmp_path):
    async with served_gateway(tmp_path, gateway_slow_response_s=1.0) as gateway:
        yield gateway


async def authorize(client: GatewayClient, token: str, key: str, **kwargs) -> dict:
    return await client.authorize(
        token=token,
        amount_minor=20_000,
        currency="USD",
        reservation_id=rsv_id("c"),
        idempotency_key=key,
        **kwargs,
    )


async def test_the_client_runs_a_payment_through_its_whole_life(client):
    card = await client.tokenize("4242 4242 4242 4242", 12, EXP_YEAR, "123")
    assert (card["last4"], card["brand"]) == ("4242", "visa")
    auth = await authorize(client, card["token"], "pay-1")
    assert auth["status"] == "authorized"
    assert (await client.get(auth["id"]))["id"] == auth["id"]
    assert (await client.capture(auth["id"], idempotency_key="cap-1", amount_minor=15_000))["captured_minor"] == 15_000
    partial = await client.refund(auth["id"], idempotency_key="ref-1", amount_minor=5_000)
    assert (partial["status"], partial["refunded_minor"]) == ("partially_refunded", 5_000)
    assert (await client.refund(auth["id"], idempotency_key="ref-2"))["refunded_minor"] == 15_000
    # codes outside the shared catalogue come back as BooklineError with the answered status
    with pytest.raises(BooklineError) as conflict:
        await client.void(auth["id"], idempotency_key="void-1")
    assert (conflict.value.status, conflict.value.code) == (409, "already_captured")

    other = await authorize(client, card["token"], "pay-2")
    assert (await client.void(other["id"], idempotency_key="void-2"))["status"] == "voided"
    ledger = await client.ledger(rsv_id("c"))
    assert (ledger["authorized_minor"], ledger["captured_minor"], ledger["refunded_minor"]) == (
        40_000,
        15_000,
        15_000,
    )
    assert ledger["voided_minor"] == 20_000


async def test_a_decline_raises_payment_declined_with_its_reason_and_attempt(client):
    card = await client.tokenize("4000000000009995", 12, EXP_YEAR, "123")
    with pytest.raises(PaymentDeclined) as declined:
        await authorize(client, card["token"], "pay-1")
    assert declined.value.status == 402
    assert declined.value.details["decline_reason"] == "insufficient_funds"
    attempt = await client.get(declined.value.details["authorization_id"])
    assert attempt["status"] == "declined"


async def test_an_invalid_card_and_a_processor_failure_become_domain_errors(client):
    with pytest.raises(BooklineError) as invalid:
        await client.tokenize("4242424242424241", 12, EXP_YEAR, "123")
    assert (invalid.value.status, invalid.value.code) == (422, "invalid_card")
    assert "4242" not in invalid.value.message
    failing = await client.tokenize("4000000000000119", 12, EXP_YEAR, "123")
    with pytest.raises(DependencyFailed) as failed:
        await authorize(client, failing["token"], "pay-1")
    assert failed.value.details == {"dependency": "payment-gateway"}
    assert await client.find_by_idempotency_key("pay-1") is None


async def test_a_timed_out_authorization_is_found_by_its_key_and_a_retry_replays_it(client):
    card = await client.tokenize("4000000000000341", 12, EXP_YEAR, "123")
    with pytest.raises(DependencyTimeout):
        await authorize(client, card["token"], "pay-slow", timeout=0.3)
    found = await client.find_by_idempotency_key("pay-slow")
    assert found is not None and found["status"] == "authorized"
    retried = await authorize(client, card["token"], "pay-slow", timeout=0.3)
    assert retried["id"] == found["id"]
    assert len((await client.ledger(rsv_id("c")))["authorizations"]) == 1
