"""pricing-engine's HTTP API, run in-process on a real SQLite database seeded with demo inventory: prices,
quotes, their spans, who may ask for them (booking-service alone) and the one format of every id."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from bookline.adapters.db import Database
from bookline.config import SERVICES, Settings
from bookline.domain.pricing import RatePlan, cancellation_terms, price_stay
from bookline.domain.stay import StayDates
from bookline.seed import seed_inventory
from bookline.services.pricing.api import TermsPublic, build_app
from bookline.services.pricing.tables import quotes, rate_plans
from bookline.telemetry import setup_telemetry
from support.booking import as_service, caller_headers
from support.postgres import PG_URL, require_postgres_async

STAY = {"check_in": "2031-03-06", "check_out": "2031-03-10"}  # Thursday to Monday


@dataclass
class Pricing:
    http: httpx.AsyncClient  # presents booking-service's credential
    spans: InMemorySpanExporter
    settings: Settings
    app: Any

    def client_of(self, caller: str | None) -> httpx.AsyncClient:
        """A client of the same app presenting ``caller``'s service credential, or none at all."""
        headers = as_service(self.settings.key_dir, caller, "pricing-engine") if caller else {}
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url="http://pricing", headers=headers)

    def spans_named(self, name: str):
        return [s for s in self.spans.get_finished_spans() if s.name == name]


@asynccontextmanager
async def running_pricing(settings: Settings) -> AsyncIterator[Pricing]:
    await seed_inventory(settings, properties=3, rooms_per_property=4)
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("pricing-engine", settings, span_exporter=exporter)
    app = build_app(settings, telemetry)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            caller = caller_headers(settings, "booking-service", "pricing-engine")
            async with httpx.AsyncClient(transport=transport, base_url="http://pricing", headers=caller) as http:
                yield Pricing(http, exporter, settings, app)
    finally:
        telemetry.shutdown()


@pytest.fixture
async def pricing(tmp_path) -> AsyncIterator[Pricing]:
    async with running_pricing(Settings(data_dir=tmp_path)) as running:
        yield running


def pricing_db(settings: Settings) -> Database:
    return Database(settings.database_url_of("pricing-engine"), schema=settings.schema_of("pricing-engine"))


async def rate_plan(settings: Settings, room_id: str) -> RatePlan:
    db = pricing_db(settings)
    try:
        async with db.read() as conn:
            row = (await conn.execute(select(rate_plans).where(rate_plans.c.room_id == room_id))).one()
        return RatePlan(**row._mapping)
    finally:
        await db.dispose()


async def quote_count(settings: Settings) -> int:
    db = pricing_db(settings)
    try:
        async with db.read() as conn:
            return (await conn.execute(select(func.count()).select_from(quotes))).scalar_one()
    finally:
        await db.dispose()


def expected_body(plan: RatePlan, guests: int) -> dict:
    stay = StayDates(date.fromisoformat(STAY["check_in"]), date.fromisoformat(STAY["check_out"]))
    priced = price_stay(plan, stay, guests)
    terms = TermsPublic(**cancellation_terms(plan, stay, priced).as_dict()).model_dump(mode="json")
    return {
        "cancellation": terms,
        "currency": plan.currency,
        "nights": [
            {"night": n.night.isoformat(), "amount_minor": n.amount_minor, "rules": n.rules} for n in priced.nights
        ],
        "subtotal_minor": priced.subtotal.minor,
        "taxes_minor": priced.taxes.minor,
        "total_minor": priced.total.minor,
        "rules_applied": priced.rules_applied,
    }


def quote_request(room_id: str = "prop-00001-r002", **overrides) -> dict:
    return {"property_id": "prop-00001", "room_id": room_id, "guests": 2, **STAY, **overrides}


async def test_prices_every_listed_room_that_has_a_rate_plan_and_leaves_out_the_others(pricing):
    response = await pricing.http.post(
        "/prices",
        json={
            "property_id": "prop-00001",
            # a room with no plan, and a room of another property, are left out
            "room_ids": ["prop-00001-r003", "prop-00001-r999", "prop-00002-r001", "prop-00001-r001"],
            "guests": 2,
            **STAY,
        },
    )

    assert response.status_code == 200
    prices = response.json()["prices"]
    assert [p["room_id"] for p in prices] == ["prop-00001-r003", "prop-00001-r001"]
    for price in prices:
        plan = await rate_plan(pricing.settings, price["room_id"])
        assert price == {"room_id": plan.room_id, "quote_id": None, "expires_at": None, **expected_body(plan, guests=2)}
        assert price["total_minor"] == price["subtotal_minor"] + price["taxes_minor"]
        assert [n["night"] for n in price["nights"]] == [
            "2031-03-06", "2031-03-07", "2031-03-08", "2031-03-09"
        ]  # fmt: skip


async def test_prices_reads_all_rate_plans_in_one_select_and_writes_nothing(pricing):
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        response = await pricing.http.post(
            "/prices",
            json={
                "property_id": "prop-00002",
                "room_ids": [f"prop-00002-r{i:03d}" for i in range(1, 5)],
                "guests": 3,
                **STAY,
            },
        )
    finally:
        event.remove(Engine, "before_cursor_execute", record)

    assert response.status_code == 200 and len(response.json()["prices"]) == 4
    assert [s.split()[0].upper() for s in statements if "rate_plans" in s] == ["SELECT"]
    assert not [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert await quote_count(pricing.settings) == 0


async def test_prices_emits_a_price_rooms_span_with_the_rooms_priced(pricing):
    await pricing.http.post(
        "/prices",
        json={
            "property_id": "prop-00003",
            "room_ids": ["prop-00003-r001", "prop-00003-r002", "nope"],
            "guests": 1,
            **STAY,
        },
    )

    [span] = pricing.spans_named("pricing.price_rooms")
    assert span.kind == SpanKind.INTERNAL
    assert dict(span.attributes) == {"booking.property_id": "prop-00003", "pricing.rooms_priced": 2}
    [server] = [s for s in pricing.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert span.parent.span_id == server.context.span_id


async def test_quote_is_created_with_an_expiry_and_read_back_unchanged(pricing):
    before = time.time()
    created = await pricing.http.post("/quotes", json=quote_request(guests=3))

    assert created.status_code == 201
    quote = created.json()
    plan = await rate_plan(pricing.settings, "prop-00001-r002")
    assert quote["quote_id"].startswith("q_")
    assert {k: quote[k] for k in expected_body(plan, 3)} == expected_body(plan, guests=3)
    assert (quote["property_id"], quote["room_id"], quote["guests"]) == ("prop-00001", "prop-00001-r002", 3)
    assert (quote["check_in"], quote["check_out"]) == (STAY["check_in"], STAY["check_out"])
    assert quote["expired"] is False
    expires_at = datetime.fromisoformat(quote["expires_at"])
    assert expires_at.utcoffset().total_seconds() == 0
    ttl = pricing.settings.quote_ttl_seconds
    assert before + ttl <= expires_at.timestamp() <= time.time() + ttl

    fetched = await pricing.http.get(f"/quotes/{quote['quote_id']}")

    assert fetched.status_code == 200
    assert fetched.json() == quote
    assert await quote_count(pricing.settings) == 1


async def test_quote_emits_a_price_stay_span_with_the_quote_and_its_total(pricing):
    quote = (await pricing.http.post("/quotes", json=quote_request())).json()

    [span] = pricing.spans_named("pricing.price_stay")
    assert span.kind == SpanKind.INTERNAL
    assert dict(span.attributes) == {
        "booking.room_id": "prop-00001-r002",
        "booking.nights": 4,
        "pricing.quote_id": quote["quote_id"],
        "pricing.total_minor": quote["total_minor"],
        "pricing.currency": quote["currency"],
        "pricing.rules_applied": tuple(quote["rules_applied"]),
        "pricing.rooms_priced": 1,
    }
    [server] = [s for s in pricing.spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert span.parent.span_id == server.context.span_id


async def test_expired_quote_is_still_returned_marked_expired(tmp_path):
    async with running_pricing(Settings(data_dir=tmp_path, quote_ttl_seconds=0.2)) as pricing:
        created = (await pricing.http.post("/quotes", json=quote_request())).json()
        assert created["expired"] is False
        await asyncio.sleep(0.3)

        fetched = await pricing.http.get(f"/quotes/{created['quote_id']}")

    assert fetched.status_code == 200
    assert fetched.json() == {**created, "expired": True}


async def test_quote_for_a_room_without_rate_plan_is_404_room_not_priced(pricing):
    response = await pricing.http.post("/quotes", json=quote_request("prop-00001-r999"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "room_not_priced"
    assert pricing.spans_named("pricing.price_stay") == []


async def test_quote_for_a_room_of_another_property_is_404_room_not_priced(pricing):
    response = await pricing.http.post("/quotes", json=quote_request("prop-00002-r001"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "room_not_priced"


async def test_unknown_quote_is_404_quote_not_found(pricing):
    response = await pricing.http.get("/quotes/q_" + "ab" * 12)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "quote_not_found"


@pytest.mark.parametrize("check_out", ["2031-03-06", "2031-03-05"])
async def test_check_out_not_after_check_in_is_422_invalid_stay(pricing, check_out):
    stay = {"check_in": "2031-03-06", "check_out": check_out}
    quote = await pricing.http.post("/quotes", json={**quote_request(), **stay})
    prices = await pricing.http.post(
        "/prices",
        json={"property_id": "prop-00001", "room_ids": ["prop-00001-r001"], "guests": 2, **stay},
    )

    for response in (quote, prices):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_stay"
    assert await quote_count(pricing.settings) == 0


async def test_stay_longer_than_the_maximum_is_422_invalid_stay(pricing):
    response = await pricing.http.post("/quotes", json=quote_request(check_in="2031-03-01", check_out="2031-05-01"))

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_stay"


@pytest.mark.parametrize(
    "body",
    [
        {"room_ids": []},
        {"room_ids": [f"prop-00001-r{i:03d}" for i in range(501)]},
        {"guests": 0},
        {"check_in": "not-a-date"},
    ],
)
async def test_malformed_price_request_is_422_validation_error(pricing, body):
    request = {"property_id": "prop-00001", "room_ids": ["prop-00001-r001"], "guests": 2, **STAY}
    response = await pricing.http.post("/prices", json={**request, **body})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_rooms_seeded_while_the_engine_runs_are_priced(pricing):
    await seed_inventory(pricing.settings, properties=5, rooms_per_property=4)

    response = await pricing.http.post(
        "/prices",
        json={"property_id": "prop-00005", "room_ids": ["prop-00005-r004"], "guests": 2, **STAY},
    )

    assert [p["room_id"] for p in response.json()["prices"]] == ["prop-00005-r004"]


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.mark.postgres
async def test_quote_round_trip_on_postgresql(tmp_path):
    await require_postgres_async()
    prefix = f"t{uuid4().hex[:8]}_"
    settings = Settings(data_dir=tmp_path, database_url=PG_URL, db_schema_prefix=prefix)
    try:
        async with running_pricing(settings) as pricing:
            created = await pricing.http.post("/quotes", json=quote_request())
            fetched = await pricing.http.get(f"/quotes/{created.json()['quote_id']}")
            plan = await rate_plan(settings, "prop-00001-r002")
    finally:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            for key in ("availability", "pricing"):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{prefix}{key}" CASCADE')
        finally:
            await conn.close()

    assert created.status_code == 201 and fetched.status_code == 200
    assert fetched.json() == created.json()
    assert created.json()["total_minor"] == expected_body(plan, guests=2)["total_minor"]


async def test_a_quote_id_out_of_its_format_is_422(pricing):
    for quote_id in ("q_0123456789abcdef", "q_4111111111111111" + "ab" * 4, "4242424242424242"):
        response = await pricing.http.get(f"/quotes/{quote_id}")
        assert response.status_code == 422, quote_id
        assert "4111111111111111" not in response.text and "4242424242424242" not in response.text


# --- who may price: booking-service alone, with its service credential -------------------------------

BOOKING_ONLY = ["prices", "create quote", "read quote"]


async def call_route(http: httpx.AsyncClient, route: str, quote_id: str) -> httpx.Response:
    """``route`` with inputs that are right in every way but, perhaps, the credential."""
    if route == "prices":
        body = {"property_id": "prop-00001", "room_ids": ["prop-00001-r001"], "guests": 2, **STAY}
        return await http.post("/prices", json=body)
    if route == "create quote":
        return await http.post("/quotes", json=quote_request())
    assert route == "read quote"
    return await http.get(f"/quotes/{quote_id}")


async def a_quote(pricing: Pricing) -> str:
    created = await pricing.http.post("/quotes", json=quote_request())
    assert created.status_code == 201, created.text
    return created.json()["quote_id"]


async def priced_nothing_more(pricing: Pricing) -> None:
    """A refused call priced nothing and issued no quote: only the quote made as booking-service is there."""
    assert await quote_count(pricing.settings) == 1
    assert len(pricing.spans_named("pricing.price_stay")) == 1
    assert pricing.spans_named("pricing.price_rooms") == []


@pytest.mark.parametrize("route", BOOKING_ONLY)
async def test_a_pricing_route_without_a_service_credential_answers_401(pricing, route):
    quote_id = await a_quote(pricing)

    async with pricing.client_of(None) as anonymous:
        response = await call_route(anonymous, route, quote_id)

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "missing_token"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="pricing-engine"'
    assert quote_id not in response.text  # a quote is not read back to a stranger
    await priced_nothing_more(pricing)


@pytest.mark.parametrize("route", BOOKING_ONLY)
async def test_a_pricing_route_called_by_another_service_answers_403(pricing, route):
    quote_id = await a_quote(pricing)

    async with pricing.client_of("confirmation-service") as intruder:
        response = await call_route(intruder, route, quote_id)

    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "service_forbidden"
    assert quote_id not in response.text
    await priced_nothing_more(pricing)


async def test_no_service_but_booking_service_may_issue_a_quote(pricing):
    quote_id = await a_quote(pricing)
    others = [s.name for s in SERVICES if s.name != "booking-service"]

    for caller in others:
        async with pricing.client_of(caller) as intruder:
            response = await call_route(intruder, "create quote", quote_id)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "service_forbidden"), caller
    await priced_nothing_more(pricing)


async def test_a_forged_or_misaddressed_credential_answers_401(pricing):
    await a_quote(pricing)
    misaddressed = as_service(pricing.settings.key_dir, "booking-service", "payment-gateway")
    stranger = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    claims = {"iss": "booking-service", "sub": "booking-service", "aud": "pricing-engine", "iat": now, "exp": now + 60}
    forged = {"Authorization": f"Bearer {jwt.encode(claims, stranger, algorithm='ES256')}"}

    async with pricing.client_of(None) as anonymous:
        for name, headers in {"misaddressed": misaddressed, "forged": forged}.items():
            response = await anonymous.post("/quotes", json=quote_request(), headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_service_token"), name
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="pricing-engine", error="invalid_token"'
    await priced_nothing_more(pricing)


# --- one format of every id: a card number never passes for one ------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"property_id": "4242424242424242"},
        {"property_id": "p-4242424242424242"},  # a well-formed property id, but for the card in it
        {"room_id": "r-4111111111111111"},
        {"room_id": "prop-00001-4111111111111111"},
    ],
    ids=["property id is a card", "property id holds a card", "room id holds a card", "room id ends in a card"],
)
async def test_a_card_number_in_an_id_of_a_quote_is_422_and_never_echoed(pricing, changes):
    response = await pricing.http.post("/quotes", json=quote_request(**changes))

    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")
    assert "4242424242424242" not in response.text and "4111111111111111" not in response.text
    assert await quote_count(pricing.settings) == 0
    assert pricing.spans_named("pricing.price_stay") == []


async def test_a_card_number_among_the_rooms_to_price_is_422_and_never_echoed(pricing):
    body = {"property_id": "prop-00001", "room_ids": ["prop-00001-r001", "r-4111111111111111"], "guests": 2, **STAY}
    response = await pricing.http.post("/prices", json=body)

    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")
    assert "4111111111111111" not in response.text
    assert pricing.spans_named("pricing.price_rooms") == []


@pytest.mark.parametrize(
    "quote_id",
    ["q-1", "q_1", "q_" + "a" * 32, "q_" + "A" * 24, "q_" + "a" * 23, "rsv_" + "a" * 24, "4242424242424242"],
)
async def test_a_quote_id_in_any_format_but_q_and_24_hex_is_422(pricing, quote_id):
    response = await pricing.http.get(f"/quotes/{quote_id}")
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")
    assert "4242424242424242" not in response.text


@pytest.mark.parametrize(
    "changes",
    [
        {"guests": "2"},
        {"guests": True},
        {"guests": 2.0},
        {"check_in": "2031-03-06T00:00:00"},
        {"check_in": "06/03/2031"},
        {"user_id": "user-1"},
        {"room_id": "Prop-00001-R002"},
    ],
)
async def test_a_quote_request_is_strict(pricing, changes):
    response = await pricing.http.post("/quotes", json=quote_request(**changes))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error")
    assert await quote_count(pricing.settings) == 0


async def test_rooms_of_the_same_price_are_chosen_between_at_random(pricing):
    """Guests asking at the same moment for any room spread over the cheapest ones instead of all
    racing for the first: with two rooms priced alike, forty quotes name both."""
    twins = ["prop-00001-r001", "prop-00001-r002"]
    db = pricing_db(pricing.settings)
    try:
        async with db.write() as conn:
            first = (await conn.execute(select(rate_plans).where(rate_plans.c.room_id == twins[0]))).one()._mapping
            same = {k: v for k, v in first.items() if k not in ("room_id", "property_id")}
            await conn.execute(rate_plans.update().where(rate_plans.c.room_id == twins[1]).values(**same))
    finally:
        await db.dispose()
    body = {"property_id": "prop-00001", "room_ids": twins, "guests": 2, **STAY}
    chosen = [(await pricing.http.post("/quotes", json=body)).json()["room_id"] for _ in range(40)]
    assert set(chosen) == set(twins), chosen  # the chance that one room takes all forty: 2 in 10^12
