"""What a client of Bookline does in tests: tokenize a card at the gateway, then book."""

from __future__ import annotations

import itertools
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

APPROVE = "4242424242424242"
DECLINE = "4000000000000002"
INSUFFICIENT = "4000000000009995"
GATEWAY_500 = "4000000000000119"
SLOW = "4000000000000341"

_offsets = itertools.count(5)


def fresh_stay(nights: int = 2) -> tuple[date, date]:
    """A stay no other test in this process uses (each call moves 40 days further out)."""
    start = datetime.now(UTC).date() + timedelta(days=next(_offsets) * 3)
    return start, start + timedelta(days=nights)


class Client:
    def __init__(self, booking_url: str, gateway_url: str) -> None:
        self.booking_url = booking_url
        self.gateway_url = gateway_url
        self.http = httpx.Client(timeout=30)

    def tokenize(self, number: str = APPROVE) -> dict:
        r = self.http.post(
            f"{self.gateway_url}/v1/tokens",
            json={"number": number, "exp_month": 12, "exp_year": datetime.now(UTC).year + 3, "cvc": "123"},
        )
        r.raise_for_status()
        return r.json()

    def body(
        self,
        *,
        property_id: str = "prop-00001",
        stay: tuple[date, date] | None = None,
        guests: int = 2,
        room_id: str | None = None,
        card: str = APPROVE,
        user_id: str = "user-1",
        source: str = "web",
    ) -> dict[str, Any]:
        check_in, check_out = stay or fresh_stay()
        token = self.tokenize(card)
        body: dict[str, Any] = {
            "user_id": user_id,
            "source": source,
            "property_id": property_id,
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "guests": guests,
            "payment": {"method": "card", "token": token["token"], "card_last_four": token["last4"]},
        }
        if room_id:
            body["room_id"] = room_id
        return body

    def book(self, body: dict, key: str | None = None) -> httpx.Response:
        return self.http.post(
            f"{self.booking_url}/bookings", json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())}
        )

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"{self.booking_url}{path}", params=params)

    def ledger(self, reservation_id: str) -> dict:
        r = self.http.get(f"{self.gateway_url}/v1/ledger", params={"reservation_id": reservation_id})
        r.raise_for_status()
        return r.json()


def table_counts(data_dir: Path) -> dict[str, int]:
    """Row counts of every table of every service database under data_dir (SQLite)."""
    counts = {}
    for db in sorted(data_dir.glob("*.db")):
        conn = sqlite3.connect(db)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                if table == "alembic_version":
                    continue
                counts[f"{db.stem}.{table}"] = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        finally:
            conn.close()
    return counts
