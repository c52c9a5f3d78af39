"""Demo inventory: properties and rooms (availability-service) and their rate plans (pricing-engine).

Rows are written straight into both services' databases, so seeding works whether or not the
services run. The inventory is deterministic: property ``n`` of seed ``s`` draws from its own
``random.Random(f"{s}:{n}")``, so it is the same whatever the size of the run, and a bigger run
only adds properties. Existing rows are left alone, which makes a second run create nothing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

import bookline.services.availability as availability_package
import bookline.services.pricing as pricing_package
from bookline.adapters.db import Database
from bookline.adapters.migrations import script_location, upgrade
from bookline.config import Settings
from bookline.domain.terms import DEFAULT_PENALTY_NIGHTS
from bookline.services.availability.tables import properties as properties_table
from bookline.services.availability.tables import rooms as rooms_table
from bookline.services.pricing.tables import rate_plans as rate_plans_table

# short write transactions let a running service take the write lock between chunks
ROWS_PER_TRANSACTION = 5_000


@dataclass(frozen=True)
class City:
    name: str
    country: str
    currency: str
    double_rate: int  # a 3-star double room, in major units
    round_to: int  # rates are rounded to this many major units
    extra_guest: int  # major units per guest beyond the base occupancy, per night
    time_zone: str
    street: str  # how an address reads there: {name} of the street, {n} the house number
    postcode: str  # a postcode pattern: each "#" a digit


CITIES = (
    City("Lisbon", "PT", "EUR", 95, 1, 20, "Europe/Lisbon", "Rua {name} {n}", "1###-###"),
    City("Porto", "PT", "EUR", 85, 1, 18, "Europe/Lisbon", "Rua {name} {n}", "4###-###"),
    City("Barcelona", "ES", "EUR", 120, 1, 25, "Europe/Madrid", "Carrer {name} {n}", "080##"),
    City("Paris", "FR", "EUR", 160, 1, 30, "Europe/Paris", "{n} rue {name}", "750##"),
    City("Berlin", "DE", "EUR", 110, 1, 22, "Europe/Berlin", "{name}straße {n}", "10###"),
    City("Amsterdam", "NL", "EUR", 150, 1, 30, "Europe/Amsterdam", "{name}straat {n}", "10## AB"),
    City("Rome", "IT", "EUR", 130, 1, 25, "Europe/Rome", "Via {name} {n}", "001##"),
    City("London", "GB", "GBP", 140, 1, 30, "Europe/London", "{n} {name} Street", "WC2N #AB"),
    City("Edinburgh", "GB", "GBP", 115, 1, 25, "Europe/London", "{n} {name} Street", "EH1 #AB"),
    City("New York", "US", "USD", 220, 1, 40, "America/New_York", "{n} {name} Avenue", "100##"),
    City("San Francisco", "US", "USD", 200, 1, 35, "America/Los_Angeles", "{n} {name} Street", "941##"),
    City("Tokyo", "JP", "JPY", 16_000, 100, 3_000, "Asia/Tokyo", "{n} {name}-dori", "100-####"),
)
COUNTRY_NAMES = {"PT": "Portugal", "ES": "Spain", "FR": "France", "DE": "Germany", "NL": "Netherlands",
                 "IT": "Italy", "GB": "United Kingdom", "US": "United States", "JP": "Japan"}  # fmt: skip
# hours before check-in until which a property's rooms cancel for free (the default, 48, most often)
FREE_CANCELLATION_HOURS = (24, 48, 48, 48, 72)
MINOR_DIGITS = {"EUR": 2, "GBP": 2, "USD": 2, "JPY": 0}
TAX_BP = {"PT": 600, "ES": 1000, "FR": 1000, "DE": 700, "NL": 900, "IT": 1000, "GB": 2000,
          "US": 1475, "JP": 1000}  # fmt: skip


@dataclass(frozen=True)
class RoomType:
    name: str
    capacity: int
    rate_factor: float  # relative to a double room
    weight: int  # how common it is


ROOM_TYPES = (
    RoomType("single", 1, 0.75, 15),
    RoomType("double", 2, 1.0, 35),
    RoomType("twin", 2, 1.0, 20),
    RoomType("family", 4, 1.5, 15),
    RoomType("suite", 3, 2.2, 15),
)
STAR_FACTOR = {2: 0.7, 3: 1.0, 4: 1.35, 5: 1.9}
KINDS = ("Hotel", "Inn", "House", "Suites", "Lodge", "Residence")
WORDS = ("Azul", "Verde", "Sol", "Luna", "Mar", "Central", "Garden", "Harbor", "Park", "Royal",
         "Oak", "River", "Bridge", "Plaza", "Castle", "Market")  # fmt: skip


@dataclass
class Batch:
    properties: list[dict[str, Any]] = field(default_factory=list)
    rooms: list[dict[str, Any]] = field(default_factory=list)
    rate_plans: list[dict[str, Any]] = field(default_factory=list)


def property_id_of(number: int) -> str:
    return f"prop-{number:05d}"


def address_of(city: City, rng: random.Random) -> str:
    street = city.street.format(name=rng.choice(WORDS), n=rng.randint(1, 240))
    postcode = "".join(str(rng.randint(0, 9)) if c == "#" else c for c in city.postcode)
    return f"{street}, {postcode} {city.name}, {COUNTRY_NAMES[city.country]}"


def generate_property(number: int, *, rooms_per_property: int, seed: int, into: Batch) -> None:
    """Append property ``number`` (1-based), its rooms and their rate plans to a batch."""
    rng = random.Random(f"{seed}:{number}")
    # its own generator, so that what the first one draws (names, rooms, rates) stays as it was
    place = random.Random(f"{seed}:{number}:place")
    city = CITIES[(number - 1) % len(CITIES)]
    property_id = property_id_of(number)
    stars = rng.randint(2, 5)
    weekend_uplift_bp = rng.randrange(1500, 2501, 100)
    into.properties.append(
        {
            "property_id": property_id,
            "name": f"{rng.choice(KINDS)} {rng.choice(WORDS)} {city.name} {(number - 1) // len(CITIES) + 1}",
            "city": city.name,
            "country": city.country,
            "currency": city.currency,
            "stars": stars,
            "address": address_of(city, place),
            "time_zone": city.time_zone,
        }
    )
    free_cancellation_hours = place.choice(FREE_CANCELLATION_HOURS)
    minor_per_major = 10 ** MINOR_DIGITS[city.currency]
    types = rng.choices(ROOM_TYPES, weights=[t.weight for t in ROOM_TYPES], k=rooms_per_property)
    for index, room_type in enumerate(types, start=1):
        room_id = f"{property_id}-r{index:03d}"
        rate = city.double_rate * room_type.rate_factor * STAR_FACTOR[stars] * rng.uniform(0.9, 1.1)
        into.rooms.append(
            {
                "room_id": room_id,
                "property_id": property_id,
                "name": f"{room_type.name.capitalize()} {index:03d}",
                "room_type": room_type.name,
                "capacity": room_type.capacity,
            }
        )
        into.rate_plans.append(
            {
                "room_id": room_id,
                "property_id": property_id,
                "currency": city.currency,
                "base_rate_minor": round(rate / city.round_to) * city.round_to * minor_per_major,
                "weekend_uplift_bp": weekend_uplift_bp,
                "extra_guest_minor": city.extra_guest * minor_per_major,
                "base_occupancy": 1 if room_type.capacity == 1 else 2,
                "tax_bp": TAX_BP[city.country],
                "time_zone": city.time_zone,
                "free_cancellation_hours": free_cancellation_hours,
                "penalty_nights": DEFAULT_PENALTY_NIGHTS,
            }
        )


def generate(*, properties: int, rooms_per_property: int, seed: int) -> Iterator[Batch]:
    """The inventory in batches of about ROWS_PER_TRANSACTION rooms."""
    per_batch = max(1, ROWS_PER_TRANSACTION // max(1, rooms_per_property))
    for first in range(1, properties + 1, per_batch):
        batch = Batch()
        for number in range(first, min(first + per_batch, properties + 1)):
            generate_property(number, rooms_per_property=rooms_per_property, seed=seed, into=batch)
        yield batch


async def _count(db: Database, table: Table) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _insert_missing(db: Database, *chunks: tuple[Table, list[dict[str, Any]]]) -> None:
    """Insert rows in one transaction, skipping those whose primary key already exists."""
    insert = sqlite_insert if db.is_sqlite else pg_insert
    async with db.write() as conn:
        for table, rows in chunks:
            if rows:
                await conn.execute(insert(table).on_conflict_do_nothing(), rows)


async def seed_inventory(
    settings: Settings, *, properties: int = 50, rooms_per_property: int = 20, seed: int = 1
) -> dict[str, Any]:
    """Create the demo inventory; return how many rows it has and how many this run created."""
    availability = Database(
        settings.database_url_of("availability-service"),
        schema=settings.schema_of("availability-service"),
    )
    pricing = Database(settings.database_url_of("pricing-engine"), schema=settings.schema_of("pricing-engine"))
    tables = {
        "properties": (availability, properties_table),
        "rooms": (availability, rooms_table),
        "rate_plans": (pricing, rate_plans_table),
    }
    try:
        await upgrade(availability, script_location(availability_package.__file__))
        await upgrade(pricing, script_location(pricing_package.__file__))
        before = {name: await _count(db, table) for name, (db, table) in tables.items()}
        for batch in generate(properties=properties, rooms_per_property=rooms_per_property, seed=seed):
            # two files (or schemas): the writes of one batch can overlap
            await asyncio.gather(
                _insert_missing(availability, (properties_table, batch.properties), (rooms_table, batch.rooms)),
                _insert_missing(pricing, (rate_plans_table, batch.rate_plans)),
            )
        after = {name: await _count(db, table) for name, (db, table) in tables.items()}
    finally:
        await availability.dispose()
        await pricing.dispose()
    wanted = {
        "properties": properties,
        "rooms": properties * rooms_per_property,
        "rate_plans": properties * rooms_per_property,
    }
    created = {name: after[name] - before[name] for name in tables}
    return {
        **wanted,
        "created": created,
        "already_present": {name: wanted[name] - created[name] for name in tables},
    }
