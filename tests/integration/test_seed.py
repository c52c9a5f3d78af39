"""The demo inventory written by seed_inventory, on real SQLite files (and PostgreSQL when present)."""

from contextlib import asynccontextmanager
from uuid import uuid4
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy import Table, select

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.seed import CITIES, COUNTRY_NAMES, seed_inventory
from bookline.services.availability.tables import properties, rooms
from bookline.services.pricing.tables import rate_plans
from support.postgres import PG_URL, require_postgres_async


async def rows_of(settings: Settings, service: str, table: Table) -> list[tuple]:
    db = Database(settings.database_url_of(service), schema=settings.schema_of(service))
    try:
        async with db.read() as conn:
            result = await conn.execute(select(table).order_by(*table.primary_key.columns))
            return [tuple(row) for row in result]
    finally:
        await db.dispose()


async def inventory(settings: Settings) -> dict[str, list[tuple]]:
    return {
        "properties": await rows_of(settings, "availability-service", properties),
        "rooms": await rows_of(settings, "availability-service", rooms),
        "rate_plans": await rows_of(settings, "pricing-engine", rate_plans),
    }


async def test_seed_creates_properties_rooms_and_a_rate_plan_per_room(tmp_path):
    settings = Settings(data_dir=tmp_path)

    counts = await seed_inventory(settings, properties=3, rooms_per_property=4)

    assert counts == {
        "properties": 3,
        "rooms": 12,
        "rate_plans": 12,
        "created": {"properties": 3, "rooms": 12, "rate_plans": 12},
        "already_present": {"properties": 0, "rooms": 0, "rate_plans": 0},
    }
    rows = await inventory(settings)
    assert [p[0] for p in rows["properties"]] == ["prop-00001", "prop-00002", "prop-00003"]
    assert rows["rooms"][0][:2] == ("prop-00001-r001", "prop-00001")
    assert [r[0] for r in rows["rooms"]] == [p[0] for p in rows["rate_plans"]]


async def test_same_seed_gives_the_same_rows_and_another_seed_different_ones(tmp_path):
    first, second, other = (Settings(data_dir=tmp_path / name) for name in ("a", "b", "c"))

    await seed_inventory(first, properties=5, rooms_per_property=6, seed=7)
    await seed_inventory(second, properties=5, rooms_per_property=6, seed=7)
    await seed_inventory(other, properties=5, rooms_per_property=6, seed=8)

    assert await inventory(first) == await inventory(second)
    assert await inventory(first) != await inventory(other)


async def test_second_run_creates_nothing(tmp_path):
    settings = Settings(data_dir=tmp_path)
    await seed_inventory(settings, properties=4, rooms_per_property=5)
    before = await inventory(settings)

    counts = await seed_inventory(settings, properties=4, rooms_per_property=5)

    assert counts["created"] == {"properties": 0, "rooms": 0, "rate_plans": 0}
    assert counts["already_present"] == {"properties": 4, "rooms": 20, "rate_plans": 20}
    assert await inventory(settings) == before


async def test_bigger_run_only_adds_properties_and_keeps_the_first_ones_identical(tmp_path):
    small, big = Settings(data_dir=tmp_path / "small"), Settings(data_dir=tmp_path / "big")
    await seed_inventory(small, properties=3, rooms_per_property=4)
    await seed_inventory(big, properties=5, rooms_per_property=4)

    counts = await seed_inventory(small, properties=5, rooms_per_property=4)

    assert counts["created"] == {"properties": 2, "rooms": 8, "rate_plans": 8}
    assert await inventory(small) == await inventory(big)


async def test_inventory_spreads_over_the_cities_with_their_currency_and_sensible_rates(tmp_path):
    settings = Settings(data_dir=tmp_path)
    await seed_inventory(settings, properties=len(CITIES), rooms_per_property=10)
    rows = await inventory(settings)

    by_city = {p[2]: p for p in rows["properties"]}
    assert set(by_city) == {c.name for c in CITIES}
    assert by_city["Tokyo"][3:5] == ("JP", "JPY") and by_city["London"][3:5] == ("GB", "GBP")
    assert all(2 <= p[5] <= 5 for p in rows["properties"])

    currency_of = {p[0]: p[4] for p in rows["properties"]}
    capacity = {"single": 1, "double": 2, "twin": 2, "family": 4, "suite": 3}
    assert all(r[4] == capacity[r[3]] for r in rows["rooms"])
    single_rooms = {r[0] for r in rows["rooms"] if r[3] == "single"}
    zone_of = {p[0]: p[7] for p in rows["properties"]}
    assert all(p[6].endswith(COUNTRY_NAMES[p[3]]) and p[2] in p[6] for p in rows["properties"])  # the address
    for room_id, property_id, currency, base, weekend, extra, occupancy, tax, zone, free_hours, penalty_nights in rows[
        "rate_plans"
    ]:  # fmt: skip
        assert currency == currency_of[property_id]
        assert zone == zone_of[property_id] and ZoneInfo(zone)
        assert free_hours in (24, 48, 72) and penalty_nights == 1
        assert 1500 <= weekend <= 2500 and extra > 0 and tax > 0
        assert occupancy == (1 if room_id in single_rooms else 2)
        if currency == "JPY":  # no minor digits: whole yen, rounded to 100
            assert 5_000 <= base <= 100_000 and base % 100 == 0
        else:
            assert 3_000 <= base <= 150_000 and base % 100 == 0


# --- PostgreSQL -----------------------------------------------------------------------------


@asynccontextmanager
async def postgres_settings(tmp_path):
    await require_postgres_async()
    prefix = f"t{uuid4().hex[:8]}_"
    try:
        yield Settings(data_dir=tmp_path, database_url=PG_URL, db_schema_prefix=prefix)
    finally:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            for key in ("availability", "pricing"):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{prefix}{key}" CASCADE')
        finally:
            await conn.close()


@pytest.mark.postgres
async def test_seed_on_postgresql_is_deterministic_and_idempotent(tmp_path):
    async with postgres_settings(tmp_path) as settings:
        first = await seed_inventory(settings, properties=3, rooms_per_property=4)
        second = await seed_inventory(settings, properties=3, rooms_per_property=4)
        on_postgres = await inventory(settings)

    assert first["created"] == {"properties": 3, "rooms": 12, "rate_plans": 12}
    assert second["created"] == {"properties": 0, "rooms": 0, "rate_plans": 0}
    sqlite = Settings(data_dir=tmp_path / "sqlite")
    await seed_inventory(sqlite, properties=3, rooms_per_property=4)
    assert on_postgres == await inventory(sqlite)
