"""The booking saga on PostgreSQL (one schema per service): the same outcomes as on SQLite."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from conftest import start_stack
from support.booking import DECLINE, Client
from support.postgres import PG_URL, drop_schemas, new_prefix, require_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory: pytest.TempPathFactory):
    require_postgres()
    prefix = new_prefix()
    stack = start_stack(tmp_path_factory.mktemp("pg"), database_url=PG_URL, db_schema_prefix=prefix)
    yield stack
    stack.stop()
    asyncio.run(drop_schemas(prefix))


@pytest.fixture(scope="module")
def pg_client(pg_stack) -> Client:
    return Client.for_stack(pg_stack)


def test_confirmed_then_cancelled_booking_balances_on_postgres(pg_client: Client):
    body = pg_client.body()
    key = str(uuid.uuid4())
    created = pg_client.book(body, key)
    assert created.status_code == 201, created.text
    assert pg_client.book(body, key).json() == created.json()
    booking = created.json()
    assert pg_client.ledger(booking["reservation_id"])["captured_minor"] == booking["total_minor"]
    cancelled = pg_client.cancel(booking["booking_id"])
    assert cancelled.json()["status"] == "cancelled"
    ledger = pg_client.ledger(booking["reservation_id"])
    assert ledger["captured_minor"] - ledger["refunded_minor"] == 0


def test_declined_booking_is_rolled_back_on_postgres(pg_stack, pg_client: Client):
    response = pg_client.book(pg_client.body(card=DECLINE))
    assert response.status_code == 402
    error = response.json()["error"]
    booking = pg_client.get(f"/bookings/{error['booking_id']}").json()
    assert booking["status"] == "failed" and booking["outcome"] == "declined"
    assert booking["steps"]["hold"] == "compensated"


def test_postgres_keeps_each_service_in_its_own_schema(pg_stack):
    import asyncpg

    async def schemas() -> set[str]:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch(
                "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_schema LIKE $1",
                pg_stack.settings.db_schema_prefix + "%",
            )
        finally:
            await conn.close()
        return {r["table_schema"].removeprefix(pg_stack.settings.db_schema_prefix) for r in rows}

    assert asyncio.run(schemas()) == {"booking", "availability", "pricing", "confirmation", "gateway", "notification"}
