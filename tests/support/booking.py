"""What a client of Bookline does in tests: tokenize a card at the gateway, then book."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bookline.auth.customers import mint_customer_token
from bookline.auth.provision import provision_keys
from bookline.auth.services import ServiceCredentials
from bookline.config import Settings
from bookline.redaction import looks_like_card_number

APPROVE = "4242424242424242"
DECLINE = "4000000000000002"
INSUFFICIENT = "4000000000009995"
GATEWAY_500 = "4000000000000119"
SLOW = "4000000000000341"

DEFAULT_USER = "user-1"
GUEST = {"name": "Ana Lopez", "email": "ana.lopez@example.com", "phone": "+351912345678"}

_offsets = itertools.count(5)


def fresh_stay(nights: int = 2) -> tuple[date, date]:
    """A stay no other test in this process uses (each call moves 40 days further out)."""
    start = datetime.now(UTC).date() + timedelta(days=next(_offsets) * 3)
    return start, start + timedelta(days=nights)


class Client:
    """A customer's client: tokenizes cards at the gateway, books with a token of the stack's local
    issuer (one per user id, minted on first use)."""

    def __init__(self, booking_url: str, gateway_url: str, key_dir: Path) -> None:
        self.booking_url = booking_url
        self.gateway_url = gateway_url
        self.key_dir = key_dir
        self.http = httpx.Client(timeout=30)
        self._tokens: dict[tuple[str, bool], str] = {}

    @classmethod
    def for_stack(cls, stack: Any) -> Client:
        """The client of a running stack (in-process, processes or ``bookline up``)."""
        return cls(stack.url("booking-service"), stack.url("payment-gateway"), stack.key_dir)

    def token(self, user: str = DEFAULT_USER, *, admin: bool = False) -> str:
        if (user, admin) not in self._tokens:
            settings = Settings(keys_dir=self.key_dir)
            self._tokens[user, admin] = mint_customer_token(settings, user, admin=admin)
        return self._tokens[user, admin]

    def auth(self, user: str = DEFAULT_USER, *, admin: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, admin=admin)}"}

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
        room_type: str | None = None,
        quote_id: str | None = None,
        card: str = APPROVE,
        source: str = "web",
        guest: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        check_in, check_out = stay or fresh_stay()
        token = self.tokenize(card)
        body: dict[str, Any] = {
            "source": source,
            "property_id": property_id,
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "guests": guests,
            "guest": guest or GUEST,
            "payment": {"method": "card", "token": token["token"], "card_last_four": token["last4"]},
        }
        if room_id:
            body["room_id"] = room_id
        if room_type:
            body["room_type"] = room_type
        if quote_id:
            body["quote_id"] = quote_id
        return body

    def book(self, body: dict, key: str | None = None, *, user: str = DEFAULT_USER) -> httpx.Response:
        headers = {"Idempotency-Key": key or str(uuid.uuid4()), **self.auth(user)}
        return self.http.post(f"{self.booking_url}/bookings", json=body, headers=headers)

    def get(self, path: str, *, user: str = DEFAULT_USER, admin: bool = False, **params: Any) -> httpx.Response:
        return self.http.get(f"{self.booking_url}{path}", params=params, headers=self.auth(user, admin=admin))

    def post(self, path: str, *, user: str = DEFAULT_USER, admin: bool = False, **kwargs: Any) -> httpx.Response:
        return self.http.post(f"{self.booking_url}{path}", headers=self.auth(user, admin=admin), **kwargs)

    def cancel(self, booking_id: str, *, user: str = DEFAULT_USER) -> httpx.Response:
        return self.post(f"/bookings/{booking_id}/cancel", user=user)

    def ledger(self, reservation_id: str) -> dict:
        """The gateway's ledger of a reservation, read as booking-service (the only service allowed)."""
        credentials = ServiceCredentials.of("booking-service", Settings(keys_dir=self.key_dir))
        r = self.http.get(
            f"{self.gateway_url}/v1/ledger",
            params={"reservation_id": reservation_id},
            headers=credentials.headers_for("payment-gateway"),
        )
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


def as_service(key_dir: Path, caller: str, target: str) -> dict[str, str]:
    """The Authorization header ``caller`` presents to ``target`` (a test standing in for a service)."""
    return ServiceCredentials.of(caller, Settings(keys_dir=key_dir)).headers_for(target)


def well_formed_id(prefix: str, label: object) -> str:
    """A stable id in Bookline's one format (``prefix`` + 24 hex digits) named by ``label``: tests that
    made up ids such as "bk_1" say ``well_formed_id("bk_", 1)``."""
    for attempt in range(100):
        candidate = prefix + hashlib.sha256(f"{label}/{attempt}".encode()).hexdigest()[:24]
        if not looks_like_card_number(candidate):
            return candidate
    raise AssertionError("no id without a card-like run")  # pragma: no cover


def bk_id(label: object) -> str:
    return well_formed_id("bk_", label)


def rsv_id(label: object) -> str:
    return well_formed_id("rsv_", label)


def caller_headers(settings: Settings, caller: str, target: str) -> dict[str, str]:
    """``as_service`` for a test that runs one service's app itself: the keys are provisioned first."""
    provision_keys(settings)
    return ServiceCredentials.of(caller, settings).headers_for(target)
