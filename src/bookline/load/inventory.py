"""What a run books: the properties and cities found through the public API at the start, the hot
rooms, and the stays it asks for.

Hot bookings all ask for one of the K hot rooms (``room_id``) on the same two nights, so they race
for the same room-nights. Every other booking asks for a random property on a random stay spread
over a long window further out, so those rarely meet one another or the hot nights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

HOT_FIRST_DAY = 14  # hot nights: 14 to 59 days from today
HOT_WINDOW_DAYS = 46
HOT_NIGHTS = 2
SPREAD_FIRST_DAY = 60  # other stays: 60 days out and beyond, well clear of the hot nights
SPREAD_WINDOW_DAYS = 600  # check-ins up to 660 days out: bookings open two years ahead
MAX_PROPERTIES = 5_000  # discovered at most (pages of 500)
HOT_DATE_TRIES = 5
HOT_PROPERTY_TRIES = 40


class InventoryError(Exception):
    """The run cannot start: booking-service does not answer, or has nothing to book."""


@dataclass(frozen=True)
class Stay:
    check_in: date
    check_out: date

    def params(self) -> dict[str, str]:
        return {"check_in": self.check_in.isoformat(), "check_out": self.check_out.isoformat()}


@dataclass(frozen=True)
class HotRoom:
    property_id: str
    room_id: str


@dataclass
class Inventory:
    property_ids: list[str]
    cities: list[str]
    today: date
    hot_rooms: list[HotRoom] = field(default_factory=list)
    hot_stay: Stay | None = None

    def spread_stay(self, rng: random.Random) -> Stay:
        """A stay of 1 to 3 nights somewhere in the long window, 60 days out or more."""
        check_in = self.today + timedelta(days=SPREAD_FIRST_DAY + rng.randrange(SPREAD_WINDOW_DAYS))
        return Stay(check_in, check_in + timedelta(days=rng.randint(1, 3)))

    def view(self) -> dict[str, Any]:
        return {
            "properties": len(self.property_ids),
            "hot_rooms": [h.room_id for h in self.hot_rooms],
            "hot_stay": self.hot_stay.params() if self.hot_stay else None,
        }


async def _get(http: httpx.AsyncClient, url: str, params: dict[str, Any]) -> Any:
    try:
        response = await http.get(url, params=params)
    except httpx.TransportError as exc:
        raise InventoryError(f"booking-service does not answer at {url} ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise InventoryError(f"GET {url} answered {response.status_code} while finding the inventory")
    return response.json()


async def discover(
    http: httpx.AsyncClient, booking_url: str, *, hot_rooms: int, rng: random.Random, today: date
) -> Inventory:
    """The properties (``GET /properties``, page by page) and, when asked for, K hot rooms that are
    free on the hot nights (``GET /availability``)."""
    property_ids: list[str] = []
    cities: set[str] = set()
    while len(property_ids) < MAX_PROPERTIES:
        page = await _get(http, f"{booking_url}/properties", {"limit": 500, "offset": len(property_ids)})
        found = page.get("properties", []) if isinstance(page, dict) else []
        property_ids += [str(p["property_id"]) for p in found]
        cities |= {str(p["city"]) for p in found if p.get("city")}
        if len(found) < 500:
            break
    if not property_ids:
        raise InventoryError("booking-service has no properties: run `bookline seed` first")
    inventory = Inventory(property_ids=property_ids, cities=sorted(cities), today=today)
    if hot_rooms > 0:
        inventory.hot_stay, inventory.hot_rooms = await _pick_hot_rooms(http, booking_url, inventory, hot_rooms, rng)
    return inventory


async def _pick_hot_rooms(
    http: httpx.AsyncClient, booking_url: str, inventory: Inventory, wanted: int, rng: random.Random
) -> tuple[Stay, list[HotRoom]]:
    """K rooms free on the same two nights; a few dates are tried, and the one with the most free
    rooms wins (fewer than K only when the inventory has no more)."""
    best: tuple[Stay, list[HotRoom]] | None = None
    for _ in range(HOT_DATE_TRIES):
        check_in = inventory.today + timedelta(days=HOT_FIRST_DAY + rng.randrange(HOT_WINDOW_DAYS))
        stay = Stay(check_in, check_in + timedelta(days=HOT_NIGHTS))
        candidates = rng.sample(inventory.property_ids, min(len(inventory.property_ids), HOT_PROPERTY_TRIES))
        rooms: list[HotRoom] = []
        for property_id in candidates:
            free = await _get(
                http, f"{booking_url}/availability", {"property_id": property_id, "guests": 1, **stay.params()}
            )
            rooms += [HotRoom(property_id, str(r["room_id"])) for r in free.get("rooms", [])]
            if len(rooms) >= wanted:
                break
        rng.shuffle(rooms)
        if best is None or len(rooms) > len(best[1]):
            best = (stay, rooms[:wanted])
        if len(best[1]) >= wanted:
            break
    assert best is not None
    if not best[1]:
        raise InventoryError("no room is free for the hot nights: cannot pick hot rooms")
    return best
