"""What one arrival does over HTTP, as a real client of Bookline would.

- ``search``: the free rooms of a property for some stay (``GET /availability``), now and then the
  properties of a city (``GET /properties?city=``).
- ``book``: tokenize a card at the gateway (``POST /v1/tokens``: the card number goes there and
  nowhere else), then ``POST /bookings`` with a fresh Idempotency-Key, on a hot room or a spread stay,
  as the next customer of the pool (:mod:`.customers`) with that customer's bearer token.
- ``cancel``: ``POST /bookings/{id}/cancel`` of a booking this run confirmed, as the customer who
  booked it (another's answers 404); a book while there is none.
- ``duplicate``: the same request as an earlier booking, same customer, Idempotency-Key and body (a
  key is each customer's own), whose answer must be the stored one: anything else is
  ``duplicate_mismatch``. Only requests whose answer the service stored are sent again (their answer
  names the booking); a book while there is none.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx

from bookline.load.customers import Customers, Mint
from bookline.load.guests import guest_of
from bookline.load.inventory import Inventory, Stay
from bookline.load.options import Card, LoadOptions
from bookline.load.stats import (
    DUPLICATE_MISMATCH,
    TIMEOUT,
    TOKENIZE_PREFIX,
    TRANSPORT_ERROR,
    outcome_key,
)

CITY_SEARCH_SHARE = 0.2
SOURCES = ("web", "mobile", "api")
# how guests choose a room when Bookline chooses it: a share asks for a room type, the rest for any
ROOM_TYPES = ("double", "twin", "family", "suite")  # each takes two guests; a single one more choice
ROOM_TYPE_SHARE = 0.3
# a share of the bookings first search, then book the cheapest room at its quote_id, as a guest
# following the availability answer does
QUOTED_SHARE = 0.3
MAX_REMEMBERED = 2_000  # booking requests kept for duplicate submits


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def outcome(self) -> str:
        return outcome_key(self.status, self.body)


@dataclass(frozen=True)
class SentBooking:
    """A booking request, its customer and the answer the service stored for it (for a duplicate
    submit, which only the same customer can make: an idempotency key is each customer's own)."""

    key: str
    user: str
    body: dict[str, Any] = field(repr=False)  # holds a card token
    answer: Answer


class NoAnswer(Exception):
    """The request got no HTTP answer; ``outcome`` says why (``timeout`` or ``transport_error``)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


@dataclass
class Bookings:
    """What this run booked and cancelled (the JSON's ``bookings``, read by the audit's chaos test)."""

    confirmed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    cancellable: list[str] = field(default_factory=list)
    sent: list[SentBooking] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)  # booking id -> the customer who booked it

    def saw_confirmed(self, booking_id: str, user: str) -> None:
        if booking_id not in self.owners:
            self.owners[booking_id] = user
            self.confirmed.append(booking_id)
            self.cancellable.append(booking_id)

    def remember(self, sent: SentBooking) -> None:
        if len(self.sent) >= MAX_REMEMBERED:
            self.sent.pop(0)
        self.sent.append(sent)


def stored_booking_id(answer: Answer) -> str | None:
    """The booking an answer names: a 201's ``booking_id`` or an error's ``error.booking_id``. Only
    answers the saga stored under the Idempotency-Key name one (validation errors do not)."""
    body = answer.body if isinstance(answer.body, dict) else {}
    named = body.get("booking_id") or (body.get("error") or {}).get("booking_id")
    return named if isinstance(named, str) else None


class Operations:
    """``mint`` gives the bearer token of a customer id (a local issuer's, or any identity provider's);
    the bookings are dealt over ``options.customers`` customers."""

    def __init__(
        self, http: httpx.AsyncClient, options: LoadOptions, inventory: Inventory, rng: random.Random, mint: Mint
    ):
        self.http = http
        self.options = options
        self.inventory = inventory
        self.rng = rng
        self.bookings = Bookings()
        self._cards = [card for card, _ in options.cards]
        self._card_weights = [weight for _, weight in options.cards]
        self.customers = Customers(mint, options.customers)

    async def perform(self, operation: str) -> tuple[str, str]:
        """Run one arrival; returns the operation it turned out to be and its outcome."""
        actual = self.actual_operation(operation)
        run = {"search": self.search, "book": self.book, "cancel": self.cancel, "duplicate": self.duplicate}[actual]
        try:
            return actual, await run()
        except NoAnswer as exc:
            return actual, exc.outcome

    def actual_operation(self, planned: str) -> str:
        """A cancel with nothing to cancel, or a duplicate with nothing to repeat, is a book."""
        if planned == "cancel" and not self.bookings.cancellable:
            return "book"
        if planned == "duplicate" and not self.bookings.sent:
            return "book"
        return planned

    # the operations -----------------------------------------------------------------------------
    async def search(self) -> str:
        url = self.options.url
        if self.inventory.cities and self.rng.random() < CITY_SEARCH_SHARE:
            answer = await self._send(
                "GET", f"{url}/properties", params={"city": self.rng.choice(self.inventory.cities)}
            )
        else:
            stay = self.inventory.spread_stay(self.rng)
            params = {"property_id": self.rng.choice(self.inventory.property_ids), "guests": self.rng.randint(1, 2)}
            answer = await self._send("GET", f"{url}/availability", params={**params, **stay.params()})
        return answer.outcome

    async def book(self) -> str:
        card = self.rng.choices(self._cards, weights=self._card_weights)[0]
        user, body = self._booking_body()
        if "room_id" not in body and self.rng.random() < QUOTED_SHARE:
            await self._take_quote(body)
        token = await self._tokenize(card)
        if isinstance(token, str):
            return token
        body["payment"] = {"method": "card", "token": token["token"], "card_last_four": token["last4"]}
        key = str(uuid.uuid4())
        headers = {"Idempotency-Key": key, **self.customers.auth(user)}
        answer = await self._send("POST", f"{self.options.url}/bookings", json=body, headers=headers)
        self._saw(answer, user)
        if stored_booking_id(answer):
            self.bookings.remember(SentBooking(key, user, body, answer))
        return answer.outcome

    async def cancel(self) -> str:
        cancellable = self.bookings.cancellable
        booking_id = cancellable.pop(self.rng.randrange(len(cancellable)))
        owner = self.bookings.owners[booking_id]
        url = f"{self.options.url}/bookings/{booking_id}/cancel"
        answer = await self._send("POST", url, headers=self.customers.auth(owner))
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("status") == "cancelled":
            self.bookings.cancelled.append(booking_id)
        return answer.outcome

    async def duplicate(self) -> str:
        original = self.rng.choice(self.bookings.sent)
        headers = {"Idempotency-Key": original.key, **self.customers.auth(original.user)}
        answer = await self._send("POST", f"{self.options.url}/bookings", json=original.body, headers=headers)
        self._saw(answer, original.user)  # a second booking, if one was made, is this run's too (and the audit's)
        if answer != original.answer:
            return DUPLICATE_MISMATCH
        return answer.outcome

    # helpers -------------------------------------------------------------------------------------
    async def _take_quote(self, body: dict[str, Any]) -> None:
        """Search first, and book the cheapest free room at the quote the answer gives (no room free,
        or no answer: book as planned, and let booking-service say so)."""
        params = {k: body[k] for k in ("property_id", "check_in", "check_out", "guests")}
        if "room_type" in body:
            params["room_type"] = body["room_type"]
        try:
            answer = await self._send("GET", f"{self.options.url}/availability", params=params)
        except NoAnswer:
            return
        rooms = answer.body.get("rooms") if answer.status == 200 and isinstance(answer.body, dict) else None
        if rooms and isinstance(rooms[0], dict) and rooms[0].get("quote_id"):
            body["quote_id"] = rooms[0]["quote_id"]
            body["room_id"] = rooms[0]["room_id"]
            body.pop("room_type", None)

    def _booking_body(self) -> tuple[str, dict[str, Any]]:
        """The customer whose turn it is, and what they book."""
        inv = self.inventory
        user = self.customers.next()
        body: dict[str, Any] = {"source": self.rng.choice(SOURCES), "guest": guest_of(user)}
        if inv.hot_rooms and self.rng.random() < self.options.hot_share:
            room = self.rng.choice(inv.hot_rooms)
            assert inv.hot_stay is not None
            stay: Stay = inv.hot_stay
            body |= {"property_id": room.property_id, "room_id": room.room_id, "guests": 1}
        else:
            stay = inv.spread_stay(self.rng)
            body |= {"property_id": self.rng.choice(inv.property_ids), "guests": 1 if self.rng.random() < 0.7 else 2}
            if self.rng.random() < ROOM_TYPE_SHARE:
                body["room_type"] = self.rng.choice(ROOM_TYPES + (("single",) if body["guests"] == 1 else ()))
        return user, body | stay.params()

    async def _tokenize(self, card: Card) -> dict[str, str] | str:
        """The gateway's token for a card, or the outcome of a failed tokenization."""
        payload = {"number": card.number, "exp_month": 12, "exp_year": date.today().year + 3, "cvc": "123"}
        try:
            answer = await self._send("POST", f"{self.options.gateway_url}/v1/tokens", json=payload)
        except NoAnswer as exc:
            return TOKENIZE_PREFIX + exc.outcome
        body = answer.body
        if answer.status != 201 or not isinstance(body, dict) or "token" not in body or "last4" not in body:
            return TOKENIZE_PREFIX + answer.outcome
        return {"token": str(body["token"]), "last4": str(body["last4"])}

    def _saw(self, answer: Answer, user: str) -> None:
        if answer.status == 201 and isinstance(answer.body, dict) and isinstance(answer.body.get("booking_id"), str):
            self.bookings.saw_confirmed(answer.body["booking_id"], user)

    async def _send(self, method: str, url: str, **kwargs: Any) -> Answer:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise NoAnswer(TIMEOUT) from None
        except httpx.RequestError:  # refused, reset, a broken answer: the service is not answering
            raise NoAnswer(TRANSPORT_ERROR) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body)
