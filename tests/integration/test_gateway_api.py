"""payment-gateway over HTTP, in-process on a real SQLite file: tokens, authorizations and their
life, the test cards, the slow card, random faults, and the spans each operation leaves."""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bookline.auth.provision import provision_keys
from bookline.config import Settings
from bookline.services.gateway.api import build_app
from bookline.telemetry import setup_telemetry
from support.booking import as_service, rsv_id

EXP_YEAR = date.today().year + 3
TOK_X = "tok_" + "c" * 24
AUTH_X = "auth_" + "d" * 24
PAYMENT_ATTRIBUTES = {
    "payment.transaction_id",
    "payment.status",
    "payment.amount_minor",
    "payment.currency",
    "payment.card_last_four",
    "payment.card_brand",
    "payment.decline_reason",
    "payment.idempotent_replay",
    "booking.reservation_id",
}


@dataclass
class Gateway:
    http: httpx.AsyncClient
    spans: InMemorySpanExporter

    async def token(self, number: str = "4242424242424242") -> str:
        card = {"number": number, "exp_month": 12, "exp_year": EXP_YEAR, "cvc": "123"}
        response = await self.http.post("/v1/tokens", json=card)
        assert response.status_code == 201, response.text
        return response.json()["token"]

    async def authorize(
        self, token: str, key: str, *, amount: int = 12_500, reservation: str = rsv_id(1)
    ) -> httpx.Response:
        body = {"token": token, "amount_minor": amount, "currency": "EUR", "reservation_id": reservation}
        return await self.http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": key})

    async def act(self, auth_id: str, action: str, key: str, **body: int) -> httpx.Response:
        return await self.http.post(
            f"/v1/authorizations/{auth_id}/{action}", json=body or None, headers={"Idempotency-Key": key}
        )

    async def ledger(self, reservation: str = rsv_id(1)) -> dict:
        return (await self.http.get("/v1/ledger", params={"reservation_id": reservation})).json()

    def internal_spans(self, name: str | None = None) -> list:
        return [
            s
            for s in self.spans.get_finished_spans()
            if s.kind is SpanKind.INTERNAL and (name is None or s.name == name)
        ]


@asynccontextmanager
async def running_gateway(tmp_path, rng: random.Random | None = None, **overrides):
    settings = Settings(data_dir=tmp_path, **overrides)
    provision_keys(settings)
    spans = InMemorySpanExporter()
    telemetry = setup_telemetry("payment-gateway", settings, span_exporter=spans)
    app = build_app(settings, telemetry, rng=rng)
    # booking-service, the one service that may move money
    caller = as_service(settings.key_dir, "booking-service", "payment-gateway")
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=caller
        ) as http:
            yield Gateway(http, spans)
    telemetry.shutdown()


@pytest.fixture
async def gw(tmp_path):
    async with running_gateway(tmp_path) as gateway:
        yield gateway


async def test_tokenize_authorize_capture_refund_adds_up_in_the_ledger(gw):
    token = await gw.token("5555 5555 5555 4444")
    authorized = await gw.authorize(token, "pay-1", amount=12_500)
    assert authorized.status_code == 201
    auth = authorized.json()
    assert auth["id"].startswith("auth_")
    assert {k: auth[k] for k in ("status", "amount_minor", "currency", "reservation_id", "last4")} == {
        "status": "authorized",
        "amount_minor": 12_500,
        "currency": "EUR",
        "reservation_id": rsv_id(1),
        "last4": "4444",
    }
    assert auth["created_at"]

    captured = await gw.act(auth["id"], "capture", "cap-1")
    assert captured.status_code == 200
    assert (captured.json()["status"], captured.json()["captured_minor"]) == ("captured", 12_500)
    partial = await gw.act(auth["id"], "refund", "ref-1", amount_minor=2_500)
    assert (partial.json()["status"], partial.json()["refunded_minor"]) == ("partially_refunded", 2_500)
    rest = await gw.act(auth["id"], "refund", "ref-2")
    assert (rest.json()["status"], rest.json()["refunded_minor"]) == ("refunded", 12_500)

    ledger = await gw.ledger()
    assert [a["id"] for a in ledger["authorizations"]] == [auth["id"]]
    assert (ledger["authorized_minor"], ledger["captured_minor"], ledger["refunded_minor"]) == (
        12_500,
        12_500,
        12_500,
    )
    assert ledger["voided_minor"] == 0
    assert (await gw.http.get(f"/v1/authorizations/{auth['id']}")).json()["status"] == "refunded"


async def test_partial_capture_then_default_refund_returns_what_was_captured(gw):
    auth = (await gw.authorize(await gw.token(), "pay-1", amount=10_000)).json()
    assert (await gw.act(auth["id"], "capture", "cap-1", amount_minor=7_000)).json()["captured_minor"] == 7_000
    refunded = (await gw.act(auth["id"], "refund", "ref-1")).json()
    assert (refunded["status"], refunded["refunded_minor"]) == ("refunded", 7_000)


async def test_void_releases_an_authorization_and_a_second_void_answers_the_same(gw):
    auth = (await gw.authorize(await gw.token(), "pay-1")).json()
    first = await gw.act(auth["id"], "void", "void-1")
    again = await gw.act(auth["id"], "void", "void-2")
    assert (first.status_code, first.json()["status"]) == (200, "voided")
    assert (again.status_code, again.json()["status"]) == (200, "voided")
    ledger = await gw.ledger()
    assert (ledger["voided_minor"], ledger["captured_minor"], ledger["open_minor"]) == (12_500, 0, 0)


async def test_void_after_capture_is_a_conflict(gw):
    auth = (await gw.authorize(await gw.token(), "pay-1")).json()
    await gw.act(auth["id"], "capture", "cap-1")
    voided = await gw.act(auth["id"], "void", "void-1")
    assert voided.status_code == 409
    assert voided.json()["error"]["code"] == "already_captured"
    assert (await gw.http.get(f"/v1/authorizations/{auth['id']}")).json()["status"] == "captured"


async def test_refund_more_than_captured_is_refused_and_changes_nothing(gw):
    auth = (await gw.authorize(await gw.token(), "pay-1", amount=5_000)).json()
    await gw.act(auth["id"], "capture", "cap-1", amount_minor=4_000)
    refused = await gw.act(auth["id"], "refund", "ref-1", amount_minor=4_001)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "refund_exceeds_capture"
    assert (await gw.ledger())["refunded_minor"] == 0


async def test_capture_over_the_authorized_amount_is_refused(gw):
    auth = (await gw.authorize(await gw.token(), "pay-1", amount=5_000)).json()
    refused = await gw.act(auth["id"], "capture", "cap-1", amount_minor=5_001)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "capture_exceeds_authorization")


async def test_refund_of_an_authorization_not_captured_is_a_conflict(gw):
    auth = (await gw.authorize(await gw.token(), "pay-1")).json()
    refused = await gw.act(auth["id"], "refund", "ref-1")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "not_captured")


async def test_unknown_token_and_unknown_authorization_are_not_found(gw):
    unknown = await gw.authorize("tok_" + "e" * 24, "pay-1")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_token")
    missing = await gw.act("auth_" + "f" * 24, "capture", "cap-1")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    assert (await gw.http.get("/v1/authorizations/auth_" + "f" * 24)).status_code == 404


@pytest.mark.parametrize("path", ["", f"/{AUTH_X}/capture", f"/{AUTH_X}/void", f"/{AUTH_X}/refund"])
async def test_every_post_on_authorizations_needs_an_idempotency_key(gw, path):
    body = {"token": TOK_X, "amount_minor": 1, "currency": "EUR", "reservation_id": rsv_id("r")} if not path else None
    response = await gw.http.post(f"/v1/authorizations{path}", json=body)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "missing_idempotency_key")


@pytest.mark.parametrize(
    "changes",
    [{"amount_minor": 0}, {"amount_minor": 10.5}, {"amount_minor": "100"}, {"currency": "eur"}],
)
async def test_an_authorization_needs_a_positive_integer_amount_and_an_iso_currency(gw, changes):
    body = {"token": TOK_X, "amount_minor": 100, "currency": "EUR", "reservation_id": rsv_id("r")} | changes
    response = await gw.http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "k"})
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")


@pytest.mark.parametrize(
    ("number", "reason"),
    [("4000000000000002", "card_declined"), ("4000000000009995", "insufficient_funds")],
)
async def test_a_declining_test_card_answers_402_and_records_the_declined_attempt(gw, number, reason):
    declined = await gw.authorize(await gw.token(number), "pay-1")
    assert declined.status_code == 402
    error = declined.json()["error"]
    assert (error["code"], error["decline_reason"]) == ("payment_declined", reason)
    recorded = (await gw.http.get(f"/v1/authorizations/{error['authorization_id']}")).json()
    assert (recorded["status"], recorded["decline_reason"]) == ("declined", reason)
    ledger = await gw.ledger()
    assert (len(ledger["authorizations"]), ledger["authorized_minor"]) == (1, 0)

    span = gw.internal_spans("gateway.authorize")[-1]
    assert span.status.status_code is StatusCode.UNSET  # a decline is an answer, not a failure
    assert span.attributes["payment.status"] == "declined"
    assert span.attributes["payment.decline_reason"] == reason
    assert span.attributes["payment.transaction_id"] == error["authorization_id"]


async def test_the_error_card_answers_500_and_authorizes_nothing(gw):
    failed = await gw.authorize(await gw.token("4000000000000119"), "pay-1")
    assert (failed.status_code, failed.json()["error"]["code"]) == (500, "processing_error")
    assert (await gw.ledger())["authorizations"] == []
    lookup = await gw.http.get("/v1/authorizations", params={"idempotency_key": "pay-1"})
    assert (lookup.status_code, lookup.json()["error"]["code"]) == (404, "not_found")
    assert gw.internal_spans("gateway.authorize")[-1].status.status_code is StatusCode.ERROR


async def test_any_other_valid_card_approves(gw):
    assert (await gw.authorize(await gw.token("378282246310005"), "pay-1")).status_code == 201


async def test_the_slow_card_commits_the_authorization_before_its_late_answer(tmp_path):
    async with running_gateway(tmp_path, gateway_slow_response_s=0.5) as gw:
        token = await gw.token("4000000000000341")
        started = time.monotonic()
        answer = asyncio.create_task(gw.authorize(token, "pay-slow"))
        # a caller that gave up waiting resolves the unknown outcome by the key
        found = None
        while found is None or found.status_code == 404:
            await asyncio.sleep(0.02)
            found = await gw.http.get("/v1/authorizations", params={"idempotency_key": "pay-slow"})
        assert not answer.done()
        assert found.json()["status"] == "authorized"

        late = await answer
        assert time.monotonic() - started >= 0.5
        assert late.status_code == 201
        assert late.json()["id"] == found.json()["id"]


async def test_random_faults_follow_the_injected_random_source(tmp_path):
    async def outcomes(run: str) -> list[int]:
        async with running_gateway(tmp_path / run, rng=random.Random(42), gateway_decline_rate=0.5) as gw:
            token = await gw.token()
            return [(await gw.authorize(token, f"pay-{i}")).status_code for i in range(12)]

    first, second = await outcomes("a"), await outcomes("b")
    assert first == second
    assert set(first) == {201, 402}


@pytest.mark.parametrize(
    ("setting", "status"),
    [("gateway_decline_rate", 402), ("gateway_error_rate", 500), ("gateway_timeout_rate", 201)],
)
async def test_fault_rates_apply_to_approving_cards(tmp_path, setting, status):
    async with running_gateway(tmp_path, gateway_slow_response_s=0.01, **{setting: 1.0}) as gw:
        assert (await gw.authorize(await gw.token(), "pay-1")).status_code == status


async def test_latency_is_added_to_every_payment_operation(tmp_path):
    async with running_gateway(tmp_path, gateway_latency_ms=150) as gw:
        token = await gw.token()
        started = time.monotonic()
        auth = (await gw.authorize(token, "pay-1")).json()
        await gw.act(auth["id"], "capture", "cap-1")
        assert time.monotonic() - started >= 0.3


async def test_each_operation_has_one_internal_span_with_payment_attributes_only(gw):
    auth = (await gw.authorize(await gw.token(), "pay-1", reservation=rsv_id(9))).json()
    await gw.act(auth["id"], "capture", "cap-1")
    await gw.act(auth["id"], "refund", "ref-1")
    other = (await gw.authorize(await gw.token(), "pay-2", reservation=rsv_id(9))).json()
    await gw.act(other["id"], "void", "void-1")

    spans = gw.internal_spans()
    assert [s.name for s in spans] == [
        "gateway.tokenize",
        "gateway.authorize",
        "gateway.capture",
        "gateway.refund",
        "gateway.tokenize",
        "gateway.authorize",
        "gateway.void",
    ]
    for span in spans:
        assert set(span.attributes) <= PAYMENT_ATTRIBUTES, span.name
        assert span.parent is not None  # under the HTTP server span
        assert span.status.status_code is StatusCode.UNSET
    capture = spans[2]
    assert dict(capture.attributes) == {
        "payment.transaction_id": auth["id"],
        "payment.status": "captured",
        "payment.amount_minor": 12_500,
        "payment.currency": "EUR",
        "payment.card_last_four": "4242",
        "payment.card_brand": "visa",
        "payment.idempotent_replay": False,
        "booking.reservation_id": rsv_id(9),
    }
    assert spans[0].attributes == {"payment.card_last_four": "4242", "payment.card_brand": "visa"}
