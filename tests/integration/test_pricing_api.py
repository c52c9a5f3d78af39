"""pricing-engine's HTTP API, run in-process on a real SQLite database seeded with demo inventory."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from uuid import uuid4

import asyncpg
import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.domain.pricing import RatePlan, price_stay
from bookline.domain.stay import StayDates
from bookline.seed import seed_inventory
from bookline.services.pricing.api import build_app
from bookline.services.pricing.tables import quotes, rate_plans
from bookline.telemetry import setup_telemetry
from support.booking import caller_headers
from support.postgres import PG_URL, require_postgres_async

STAY = {"check_in": "2031-03-06", "check_out": "2031-03-10"}  # Thursday to Monday


@dataclass
class Pricing:
    http: httpx.AsyncClient
    spans: InMemorySpanExporter
    settings: Settings

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
                yield Pricing(http, exporter, settings)
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
    return {
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
        assert price == {"room_id": plan.room_id, **expected_body(plan, guests=2)}
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
