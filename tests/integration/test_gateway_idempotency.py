"""Idempotency keys of payment-gateway: one outcome per (key, operation), replayed exactly; a
different request under the same key is refused; a duplicate while the first runs waits for it and
replays its answer. Each keyed operation is one write transaction, which a failure rolls back whole."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from contextlib import asynccontextmanager
from datetime import date

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from bookline.config import Settings
from bookline.services.gateway import handlers
from bookline.services.gateway.api import NAME, build_app
from bookline.telemetry import setup_telemetry
from support.booking import caller_headers, rsv_id
from support.spans import transactions

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


def key_rows(tmp_path) -> list[tuple]:
    """The rows of the gateway's idempotency keys, read from its SQLite file."""
    path = Settings(data_dir=tmp_path).database_url_of(NAME).removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT key, operation, response_status FROM idempotency_keys").fetchall()


CLAIM_AND_STORED = ("INSERT", "SELECT")  # the key was taken: its row is read
CLAIM_WORK_AND_REPLY = ("INSERT", "SELECT", "INSERT", "UPDATE")  # claim, the token, the authorization, the reply


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


async def test_a_concurrent_duplicate_waits_for_the_first_and_replays_its_answer(tmp_path):
    async with running_gateway(tmp_path, gateway_latency_ms=300) as (http, spans):
        tok = await token(http)
        answers = await asyncio.gather(authorize(http, tok, "pay-1"), authorize(http, tok, "pay-1"))
        assert [a.status_code for a in answers] == [201, 201]
        assert answers[0].content == answers[1].content
        assert sorted(replay_flags(spans, "gateway.authorize")) == [False, True]
        assert len((await ledger(http))["authorizations"]) == 1


async def test_a_key_whose_row_has_no_reply_is_in_flight(tmp_path):
    """A row without a reply (left by an older version, which committed the claim on its own)."""
    async with running_gateway(tmp_path) as (http, _):
        tok = await token(http)
        body = {"token": tok, "amount_minor": 9_900, "currency": "EUR", "reservation_id": rsv_id(1)}
        request = handlers.KeyedRequest.of("pay-1", "authorize", **body)
        path = Settings(data_dir=tmp_path).database_url_of(NAME).removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO idempotency_keys (key, operation, request_hash, created_at) VALUES (?, ?, ?, 1.0)",
                (request.key, request.operation, request.request_hash),
            )
        busy = await authorize(http, tok, "pay-1")
        assert (busy.status_code, busy.json()["error"]["code"]) == (409, "idempotency_in_flight")
        assert (await ledger(http))["authorizations"] == []


async def test_each_keyed_operation_is_one_write_transaction(http, spans):
    tok, declining = await token(http), await token(http, "4000000000000002")
    spans.clear()
    auth = (await authorize(http, tok, "pay-1")).json()
    await authorize(http, tok, "pay-1")  # a replay
    assert (await authorize(http, declining, "pay-2")).status_code == 402  # a refusal, stored
    path = f"/v1/authorizations/{auth['id']}"
    await http.post(f"{path}/capture", headers={"Idempotency-Key": "c"})
    await http.post(f"{path}/refund", headers={"Idempotency-Key": "r"})
    assert (await http.post(f"{path}/void", headers={"Idempotency-Key": "v"})).status_code == 409
    assert transactions(spans) == [
        ("gateway.authorize", CLAIM_WORK_AND_REPLY),
        ("gateway.authorize", CLAIM_AND_STORED),
        ("gateway.authorize", CLAIM_WORK_AND_REPLY),
        # claim, the authorization (FOR UPDATE on PostgreSQL), its change, the reply
        ("gateway.capture", ("INSERT", "SELECT", "UPDATE", "UPDATE")),
        ("gateway.refund", ("INSERT", "SELECT", "UPDATE", "UPDATE")),
        ("gateway.void", ("INSERT", "SELECT", "UPDATE")),  # refused: nothing to change, the reply
    ]


async def test_a_processing_error_frees_the_key_so_a_retry_can_succeed(tmp_path):
    async with running_gateway(tmp_path, rng=Draws(0.01, 0.99), gateway_error_rate=0.5) as (http, spans):
        tok = await token(http)
        spans.clear()
        failed = await authorize(http, tok, "pay-1")
        assert failed.status_code == 500
        # its one transaction was rolled back: no key, no authorization
        assert transactions(spans) == [("gateway.authorize", ("INSERT", "SELECT"))]  # the claim, the token
        assert key_rows(tmp_path) == []
        retried = await authorize(http, tok, "pay-1")
        assert retried.status_code == 201
        assert len((await ledger(http))["authorizations"]) == 1
        assert key_rows(tmp_path) == [("pay-1", "authorize", 201)]
        (failed_span, retried_span) = [s for s in spans.get_finished_spans() if s.name == "gateway.authorize"]
        assert failed_span.status.status_code is StatusCode.ERROR
        assert failed_span.status.description == "processing_error"
        assert retried_span.status.status_code is not StatusCode.ERROR


async def test_an_unexpected_failure_after_the_work_changed_something_leaves_nothing(tmp_path, monkeypatch):
    async with running_gateway(tmp_path) as (http, spans):
        tok = await token(http)

        def broken_view(_auth):
            raise RuntimeError("view failed")

        # fails after the authorization was inserted, in the same transaction
        monkeypatch.setattr(handlers, "view", broken_view)
        with pytest.raises(RuntimeError):  # answered 500, and raised again by the test transport
            await authorize(http, tok, "pay-1")
        monkeypatch.undo()
        assert key_rows(tmp_path) == []
        assert (await ledger(http))["authorizations"] == []
        (span,) = [s for s in spans.get_finished_spans() if s.name == "gateway.authorize"]
        assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "RuntimeError")
        assert [e.name for e in span.events] == ["exception"]

        assert (await authorize(http, tok, "pay-1")).status_code == 201
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
