"""payment-gateway over HTTP, in-process on a real SQLite file: tokens, authorizations and their
life, the test cards, the slow card, random faults, and the spans each operation leaves; who may move
money (booking-service alone, with its service credential) and the one format of every id."""

from __future__ import annotations

import asyncio
import random
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bookline.auth.provision import provision_keys
from bookline.config import SERVICES, Settings
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
    http: httpx.AsyncClient  # presents booking-service's credential
    spans: InMemorySpanExporter
    app: Any
    key_dir: Path

    def client_of(self, caller: str | None) -> httpx.AsyncClient:
        """A client of the same app presenting ``caller``'s service credential, or none at all."""
        headers = as_service(self.key_dir, caller, "payment-gateway") if caller else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gw", headers=headers)

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
            yield Gateway(http, spans, app, settings.key_dir)
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


# --- who may move money: booking-service alone, with its service credential --------------------------

BOOKING_ONLY = ["authorize", "capture", "void", "refund", "read", "find by key", "ledger"]


async def captured_authorization(gw: Gateway) -> tuple[str, dict]:
    """A card token and an authorization of 10,000 captured in full, made as booking-service."""
    token = await gw.token()
    auth = (await gw.authorize(token, "pay-1", amount=10_000)).json()
    assert (await gw.act(auth["id"], "capture", "cap-1")).status_code == 200
    return token, auth


async def call_route(http: httpx.AsyncClient, route: str, token: str, auth_id: str) -> httpx.Response:
    """``route`` with inputs that are right in every way but, perhaps, the credential."""
    if route == "authorize":
        body = {"token": token, "amount_minor": 5_000, "currency": "EUR", "reservation_id": rsv_id(1)}
        return await http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-stolen"})
    if route in ("capture", "void", "refund"):
        key = {"Idempotency-Key": f"{route}-stolen"}
        return await http.post(f"/v1/authorizations/{auth_id}/{route}", json=None, headers=key)
    if route == "read":
        return await http.get(f"/v1/authorizations/{auth_id}")
    if route == "find by key":
        return await http.get("/v1/authorizations", params={"idempotency_key": "pay-1"})
    assert route == "ledger"
    return await http.get("/v1/ledger", params={"reservation_id": rsv_id(1)})


async def money_as_it_was(gw: Gateway, auth: dict, internal_spans: list) -> None:
    """Nothing a refused call asked for happened: one authorization, captured, not refunded or voided,
    no payment operation run, and the keys of the refused calls still free for booking-service."""
    ledger = await gw.ledger()
    assert [a["id"] for a in ledger["authorizations"]] == [auth["id"]]
    assert (ledger["authorized_minor"], ledger["captured_minor"]) == (10_000, 10_000)
    assert (ledger["refunded_minor"], ledger["voided_minor"]) == (0, 0)
    assert [s.name for s in gw.internal_spans()] == internal_spans
    lookup = await gw.http.get("/v1/authorizations", params={"idempotency_key": "pay-stolen"})
    assert lookup.status_code == 404
    refund = await gw.act(auth["id"], "refund", "refund-stolen", amount_minor=1_000)
    assert (refund.status_code, refund.json()["refunded_minor"]) == (200, 1_000)


@pytest.mark.parametrize("route", BOOKING_ONLY)
async def test_a_payment_route_without_a_service_credential_answers_401_and_moves_no_money(gw, route):
    token, auth = await captured_authorization(gw)
    before = [s.name for s in gw.internal_spans()]

    async with gw.client_of(None) as anonymous:
        response = await call_route(anonymous, route, token, auth["id"])

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "missing_token"
    # RFC 6750: a challenge, without an error attribute when no token came at all
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="payment-gateway"'
    await money_as_it_was(gw, auth, before)


@pytest.mark.parametrize("route", BOOKING_ONLY)
async def test_a_payment_route_called_by_another_service_answers_403_and_moves_no_money(gw, route):
    token, auth = await captured_authorization(gw)
    before = [s.name for s in gw.internal_spans()]

    async with gw.client_of("confirmation-service") as intruder:
        response = await call_route(intruder, route, token, auth["id"])

    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "service_forbidden"
    assert "confirmation-service" in response.json()["error"]["message"]
    await money_as_it_was(gw, auth, before)


async def test_no_service_but_booking_service_may_refund(gw):
    _token, auth = await captured_authorization(gw)
    before = [s.name for s in gw.internal_spans()]
    others = [s.name for s in SERVICES if s.name != "booking-service"]
    assert others  # every other service of Bookline, the gateway itself included

    for caller in others:
        async with gw.client_of(caller) as intruder:
            refused = await intruder.post(
                f"/v1/authorizations/{auth['id']}/refund", headers={"Idempotency-Key": "refund-stolen"}
            )
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "service_forbidden"), caller
    await money_as_it_was(gw, auth, before)


async def test_a_booking_service_credential_for_another_service_is_refused(gw):
    _token, auth = await captured_authorization(gw)
    before = [s.name for s in gw.internal_spans()]
    replayed = as_service(gw.key_dir, "booking-service", "pricing-engine")  # addressed to pricing-engine

    async with gw.client_of(None) as stranger:
        refused = await stranger.post(
            f"/v1/authorizations/{auth['id']}/refund", headers={"Idempotency-Key": "refund-stolen", **replayed}
        )

    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_service_token")
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="payment-gateway", error="invalid_token"'
    await money_as_it_was(gw, auth, before)


async def test_tokenizing_a_card_stays_open_but_the_token_buys_nothing_without_the_credential(gw):
    async with gw.client_of(None) as anonymous:
        card = {"number": "4242424242424242", "exp_month": 12, "exp_year": EXP_YEAR, "cvc": "123"}
        tokenized = await anonymous.post("/v1/tokens", json=card)
        assert tokenized.status_code == 201, tokenized.text
        body = {"token": tokenized.json()["token"], "amount_minor": 100, "currency": "EUR", "reservation_id": rsv_id(1)}
        refused = await anonymous.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-1"})

    assert refused.status_code == 401
    assert (await gw.ledger())["authorizations"] == []
    # the same token, presented by booking-service, authorizes
    assert (await gw.authorize(tokenized.json()["token"], "pay-1")).status_code == 201


# --- one format of every id: a card number never passes for one ------------------------------------------

CARD = "4242424242424242"
# well-formed (a prefix and 24 lowercase hex digits) yet holding a card-like run: refused as well
CARD_IN_RSV = "rsv_4111111111111111abcdabcd"
CARD_IN_AUTH = "auth_4111111111111111abcdabcd"
CARD_IN_TOK = "tok_4111111111111111abcdabcd"
OLD_FORMAT_RESERVATIONS = ["rsv-1", "rsv_1", "bk_" + "a" * 24, "rsv_" + "A" * 24, "rsv_" + "a" * 23, "rsv_" + "a" * 25]


def shows_no_card(response: httpx.Response) -> None:
    for digits in (CARD, "4111111111111111"):
        assert digits not in response.text


@pytest.mark.parametrize("reservation_id", [CARD, CARD_IN_RSV])
async def test_a_card_number_as_the_reservation_id_of_an_authorization_is_422_and_never_echoed(gw, reservation_id):
    body = {"token": await gw.token(), "amount_minor": 100, "currency": "EUR", "reservation_id": reservation_id}
    response = await gw.http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-1"})

    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")
    shows_no_card(response)
    assert (await gw.http.get("/v1/authorizations", params={"idempotency_key": "pay-1"})).status_code == 404
    assert gw.internal_spans("gateway.authorize") == []


async def test_a_card_number_as_a_card_token_is_422_and_never_echoed(gw):
    for token in (CARD, CARD_IN_TOK):
        body = {"token": token, "amount_minor": 100, "currency": "EUR", "reservation_id": rsv_id(1)}
        response = await gw.http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-1"})
        assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error"), token
        shows_no_card(response)


@pytest.mark.parametrize("auth_id", [CARD, CARD_IN_AUTH])
async def test_a_card_number_as_an_authorization_id_is_422_on_every_route(gw, auth_id):
    responses = [
        await gw.http.get(f"/v1/authorizations/{auth_id}"),
        *[await gw.act(auth_id, action, f"{action}-1") for action in ("capture", "void", "refund")],
    ]
    for response in responses:
        assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")
        shows_no_card(response)


async def test_a_card_number_as_an_idempotency_key_or_ledger_reservation_is_422(gw):
    by_key = await gw.http.get("/v1/authorizations", params={"idempotency_key": CARD})
    ledger = await gw.http.get("/v1/ledger", params={"reservation_id": CARD})
    for response in (by_key, ledger):
        assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")
        shows_no_card(response)


async def test_a_well_formed_reservation_id_holding_a_card_number_is_422_at_the_ledger(gw):
    response = await gw.http.get("/v1/ledger", params={"reservation_id": CARD_IN_RSV})
    assert response.status_code == 422
    shows_no_card(response)


@pytest.mark.parametrize("reservation_id", OLD_FORMAT_RESERVATIONS)
async def test_a_reservation_id_out_of_its_one_format_is_422(gw, reservation_id):
    body = {"token": await gw.token(), "amount_minor": 100, "currency": "EUR", "reservation_id": reservation_id}
    authorized = await gw.http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-1"})
    ledger = await gw.http.get("/v1/ledger", params={"reservation_id": reservation_id})

    assert (authorized.status_code, authorized.json()["error"]["code"]) == (422, "validation_error")
    assert (ledger.status_code, ledger.json()["error"]["code"]) == (422, "validation_error")
    assert (await gw.ledger())["authorizations"] == []


@pytest.mark.parametrize("auth_id", ["auth_x", "auth_1", "auth-" + "a" * 24, "auth_" + "F" * 24])
async def test_an_authorization_id_out_of_its_one_format_is_422_not_404(gw, auth_id):
    response = await gw.http.get(f"/v1/authorizations/{auth_id}")
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")


async def test_an_unknown_field_or_a_string_amount_in_an_authorization_is_422(gw):
    token = await gw.token()
    base = {"token": token, "amount_minor": 100, "currency": "EUR", "reservation_id": rsv_id(1)}
    for body in ({**base, "user_id": "user-1"}, {**base, "amount_minor": "100"}, {**base, "amount_minor": True}):
        response = await gw.http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": "pay-1"})
        assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error"), body
    assert (await gw.ledger())["authorizations"] == []
