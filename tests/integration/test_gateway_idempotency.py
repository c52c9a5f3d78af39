"""Idempotency keys of payment-gateway: one outcome per (key, operation), replayed exactly; a
different request under the same key is refused; a duplicate while the first runs is turned away."""

from __future__ import annotations

import asyncio
import random
from contextlib import asynccontextmanager
from datetime import date

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.config import Settings
from bookline.services.gateway.api import build_app
from bookline.telemetry import setup_telemetry
from support.booking import caller_headers, rsv_id

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": date.today().year + 3, "cvc": "123"}


class Draws(random.Random):
    """A random source that answers the given draws in order."""

    def __init__(self, *draws: float) -> None:
        super().__init__()
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


@asynccontextmanager
async def running_gateway(tmp_path, rng: random.Random | None = None, **overrides):
    settings = Settings(data_dir=tmp_path, **overrides)
    spans = InMemorySpanExporter()
    telemetry = setup_telemetry("payment-gateway", settings, span_exporter=spans)
    app = build_app(settings, telemetry, rng=rng)
    async with app.router.lifespan_context(app):
        caller = caller_headers(settings, "booking-service", "payment-gateway")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=caller
        ) as http:
            yield http, spans
    telemetry.shutdown()


@pytest.fixture
async def running(tmp_path):
    async with running_gateway(tmp_path) as pair:
        yield pair


@pytest.fixture
def http(running) -> httpx.AsyncClient:
    return running[0]


@pytest.fixture
def spans(running) -> InMemorySpanExporter:
    return running[1]


async def token(http: httpx.AsyncClient, number: str = CARD["number"]) -> str:
    return (await http.post("/v1/tokens", json=CARD | {"number": number})).json()["token"]


async def authorize(http, tok: str, key: str, amount: int = 9_900) -> httpx.Response:
    body = {"token": tok, "amount_minor": amount, "currency": "EUR", "reservation_id": rsv_id(1)}
    return await http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": key})


async def ledger(http) -> dict:
    return (await http.get("/v1/ledger", params={"reservation_id": rsv_id(1)})).json()


def replay_flags(spans: InMemorySpanExporter, name: str) -> list[bool]:
    return [s.attributes["payment.idempotent_replay"] for s in spans.get_finished_spans() if s.name == name]


async def test_a_repeated_authorize_replays_the_same_answer_and_authorizes_once(http, spans):
    tok = await token(http)
    first = await authorize(http, tok, "pay-1")
    again = await authorize(http, tok, "pay-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content
    assert len((await ledger(http))["authorizations"]) == 1
    assert replay_flags(spans, "gateway.authorize") == [False, True]


async def test_control_a_different_key_makes_a_second_authorization(http):
    tok = await token(http)
    first = await authorize(http, tok, "pay-1")
    second = await authorize(http, tok, "pay-2")
    assert first.json()["id"] != second.json()["id"]
    assert len((await ledger(http))["authorizations"]) == 2
    assert (await ledger(http))["authorized_minor"] == 2 * 9_900


async def test_the_same_key_with_a_different_body_is_refused(http):
    tok = await token(http)
    await authorize(http, tok, "pay-1", amount=9_900)
    reused = await authorize(http, tok, "pay-1", amount=9_901)
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")
    assert len((await ledger(http))["authorizations"]) == 1


async def test_a_repeated_decline_replays_the_same_402(http):
    tok = await token(http, "4000000000000002")
    first = await authorize(http, tok, "pay-1")
    again = await authorize(http, tok, "pay-1")
    assert (first.status_code, again.status_code) == (402, 402)
    assert again.json()["error"] == first.json()["error"]
    assert len((await ledger(http))["authorizations"]) == 1


async def test_the_lookup_by_key_finds_the_authorization_of_that_key_only(http):
    tok = await token(http)
    made = (await authorize(http, tok, "pay-1")).json()
    found = await http.get("/v1/authorizations", params={"idempotency_key": "pay-1"})
    assert found.json() == made
    missing = await http.get("/v1/authorizations", params={"idempotency_key": "pay-2"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


async def test_a_concurrent_duplicate_is_turned_away_while_the_first_runs(tmp_path):
    async with running_gateway(tmp_path, gateway_latency_ms=300) as (http, _):
        tok = await token(http)
        answers = await asyncio.gather(authorize(http, tok, "pay-1"), authorize(http, tok, "pay-1"))
        assert sorted(a.status_code for a in answers) == [201, 409]
        busy = next(a for a in answers if a.status_code == 409)
        assert busy.json()["error"]["code"] == "idempotency_in_flight"
        assert (await authorize(http, tok, "pay-1")).status_code == 201
        assert len((await ledger(http))["authorizations"]) == 1


async def test_a_processing_error_frees_the_key_so_a_retry_can_succeed(tmp_path):
    async with running_gateway(tmp_path, rng=Draws(0.01, 0.99), gateway_error_rate=0.5) as (http, _):
        tok = await token(http)
        failed = await authorize(http, tok, "pay-1")
        retried = await authorize(http, tok, "pay-1")
        assert (failed.status_code, retried.status_code) == (500, 201)
        assert len((await ledger(http))["authorizations"]) == 1


async def test_capture_void_and_refund_replay_their_answer_per_key(http, spans):
    auth = (await authorize(http, await token(http), "pay-1")).json()
    path = f"/v1/authorizations/{auth['id']}"
    first = await http.post(f"{path}/capture", json={"amount_minor": 5_000}, headers={"Idempotency-Key": "c"})
    again = await http.post(f"{path}/capture", json={"amount_minor": 5_000}, headers={"Idempotency-Key": "c"})
    assert again.content == first.content
    refund = await http.post(f"{path}/refund", headers={"Idempotency-Key": "r"})
    refund_again = await http.post(f"{path}/refund", headers={"Idempotency-Key": "r"})
    assert refund_again.content == refund.content
    assert (await ledger(http))["refunded_minor"] == 5_000
    assert replay_flags(spans, "gateway.capture") == [False, True]
    assert replay_flags(spans, "gateway.refund") == [False, True]

    refused = await http.post(f"{path}/void", headers={"Idempotency-Key": "v"})
    refused_again = await http.post(f"{path}/void", headers={"Idempotency-Key": "v"})
    assert (refused.status_code, refused_again.status_code) == (409, 409)
    assert refused_again.json()["error"] == refused.json()["error"]


async def test_a_capture_key_reused_for_another_amount_is_refused(http):
    auth = (await authorize(http, await token(http), "pay-1")).json()
    path = f"/v1/authorizations/{auth['id']}/capture"
    await http.post(path, json={"amount_minor": 5_000}, headers={"Idempotency-Key": "c"})
    reused = await http.post(path, json={"amount_minor": 6_000}, headers={"Idempotency-Key": "c"})
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")


async def test_a_key_is_scoped_to_its_operation(http):
    auth = (await authorize(http, await token(http), rsv_id(1))).json()
    captured = await http.post(f"/v1/authorizations/{auth['id']}/capture", headers={"Idempotency-Key": rsv_id(1)})
    assert (captured.status_code, captured.json()["status"]) == (200, "captured")
