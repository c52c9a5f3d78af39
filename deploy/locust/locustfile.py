"""Bookline under Locust: the mix of ``bookline load`` (search, book, cancel, duplicate submit) as
Locust tasks, for those who prefer Locust's web UI, its distributed workers or its reports.

    locust -f deploy/locust/locustfile.py --host http://127.0.0.1:8000 \
        --gateway-url http://127.0.0.1:8004 --hot-rooms 2 -u 20 -r 5 -t 2m --headless

Each user runs one task per second (``constant_throughput(1)``), so ``-u 20`` asks for about 20
operations per second. Unlike ``bookline load`` this is a closed model: a user waits for its answer
before its next task, so a slow Bookline is sent less (see deploy/locust/README.md).

A booking tokenizes its card at the gateway first (the card number goes there and nowhere else:
Locust never records request bodies), then books with a fresh Idempotency-Key as the next customer of
a pool (``--customers``, 2000 per Locust process, named ``locust-<run>-<n>``): booking-service limits
bookings per customer (30 a minute), and a pool dealt round-robin keeps each customer far below it up
to about 1,000 bookings a second. Each customer's bearer token is minted once (again when it nears
its expiry), signed by the stack's local issuer, whose key is in the stack's data directory:

    --data-dir DIR                      the stack's data directory (``bookline up --data-dir DIR``)
    BOOKLINE_DATA_DIR=DIR               the same from the environment (workers of a distributed run)
    (neither)                           ./var, where ``make run`` keeps it

Without the key Locust stops at once and says so (``bookline keys`` makes one). A cancel or a
duplicate submit is sent by the customer who booked: an idempotency key and a booking are each
customer's own. 402 and 409 answers are results of a booking system, not failures of the test: they
count as successes in Locust's table and by code in the outcome table printed at the end. Failures
are the 5xx answers, transport errors, and a duplicate submit whose answer differs from the first
(``duplicate_mismatch``). A 429 (a rate limit of the stack) is a failure too: the test would be
measuring the limit.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from locust import HttpUser, constant_throughput, events
from locust.runners import MasterRunner

from bookline.auth.customers import LocalIssuer
from bookline.auth.keys import MissingKeyError
from bookline.config import Settings
from bookline.load.customers import Customers
from bookline.load.guests import guest_of
from bookline.load.inventory import HOT_FIRST_DAY, HOT_NIGHTS, HotRoom, Inventory, Stay
from bookline.load.operations import (
    MAX_REMEMBERED,
    QUOTED_SHARE,
    ROOM_TYPE_SHARE,
    ROOM_TYPES,
    Answer,
    stored_booking_id,
)
from bookline.load.options import DEFAULT_CARDS, DEFAULT_MIX, parse_cards, parse_mix
from bookline.load.stats import DUPLICATE_MISMATCH, outcome_key

SOURCES = ("web", "mobile", "api")
EXPECTED = {200, 201, 402, 409}  # answers of a working booking system, whatever they say
# and a room type the property has none of (the load asks for types without knowing each property's rooms)
EXPECTED_OUTCOMES = {"404 room_type_not_found"}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("Bookline")
    group.add_argument("--gateway-url", default="", help="payment-gateway base URL (default: from the settings)")
    group.add_argument("--mix", default=DEFAULT_MIX, help="share of each operation, as for bookline load")
    group.add_argument("--hot-rooms", type=int, default=0, help="K rooms a share of the bookings fights over")
    group.add_argument("--hot-share", type=float, default=0.5, help="share of bookings aimed at the hot rooms")
    group.add_argument("--cards", default=DEFAULT_CARDS, help="test cards and their shares, as for bookline load")
    group.add_argument("--data-dir", default="", help="the stack's data directory (default: BOOKLINE_DATA_DIR, ./var)")
    group.add_argument("--customers", type=int, default=2000, help="customers the bookings are dealt over")


class Shared:
    """What every user of this process shares: the inventory, found once, and this run's bookings."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # gevent patches it into a greenlet lock under Locust
        self.inventory: Inventory | None = None
        self.confirmed = 0
        self.cancellable: list[tuple[str, str]] = []  # (booking, customer) confirmed by this run, not cancelled
        self.sent: list[tuple[str, str, dict, int, object]] = []  # key, customer, body (a card token), status, answer
        self.customers: Customers | None = None  # this process's pool, with the stack's local issuer
        self.outcomes: Counter[str] = Counter()


shared = Shared()


@events.init.add_listener
def _weights(environment, **_kwargs) -> None:
    """Task weights from ``--mix`` (Locust's ``@task(n)`` would fix them in the code)."""
    options = environment.parsed_options
    if options is None:
        return
    mix = parse_mix(options.mix)
    by_name = {"search": BooklineUser.search, "book": BooklineUser.book,
               "cancel": BooklineUser.cancel, "duplicate": BooklineUser.duplicate}  # fmt: skip
    BooklineUser.tasks = [by_name[name] for name, weight in mix.items() for _ in range(round(weight))]


@events.init.add_listener
def _customers(environment, **_kwargs) -> None:
    """The pool of customers, with the stack's local issuer: found before any user starts, so that a
    missing key stops Locust with one message instead of a traceback per user. A master sends nothing."""
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, MasterRunner):
        return
    settings = Settings(data_dir=options.data_dir) if options.data_dir else Settings()
    try:
        issuer = LocalIssuer(settings)
    except (MissingKeyError, OSError):
        logging.getLogger("bookline").error(
            "no usable customer-token issuer key in %s: pass the running stack's --data-dir (or set "
            "BOOKLINE_DATA_DIR), or run `bookline keys --data-dir DIR` to make one",
            settings.key_dir,
        )
        raise SystemExit(2) from None
    if options.customers < 1:
        raise SystemExit("--customers: must be at least 1")
    shared.customers = Customers(issuer.mint, options.customers, prefix="locust")


@events.quitting.add_listener
def _print_outcomes(environment, **_kwargs) -> None:
    print("\nBookline outcomes (operation, HTTP status and error code):")
    for outcome, count in sorted(shared.outcomes.items()):
        print(f"  {outcome:<48} {count:>8}")
    print(f"  bookings confirmed: {shared.confirmed}")


class BooklineUser(HttpUser):
    wait_time = constant_throughput(1)
    tasks: list = []  # set from --mix when Locust starts

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.gateway_url = (options.gateway_url or Settings().url_of("payment-gateway")).rstrip("/")
        self.rng = random.Random()
        cards = parse_cards(options.cards)
        self.cards = [card for card, _ in cards]
        self.card_weights = [weight for _, weight in cards]
        with shared.lock:
            if shared.inventory is None:
                shared.inventory = self._discover(options.hot_rooms)
        self.inventory = shared.inventory
        assert shared.customers is not None, "the init listener makes the pool"
        self.customers = shared.customers

    # discovery, once per process ------------------------------------------------------------
    def _discover(self, hot_rooms: int) -> Inventory:
        found = self.client.get("/properties", params={"limit": 500}, name="GET /properties (discover)").json()
        properties = found["properties"]
        if not properties:
            raise RuntimeError("booking-service has no properties: run `bookline seed` first")
        today = datetime.now(UTC).date()
        inventory = Inventory(
            property_ids=[p["property_id"] for p in properties],
            cities=sorted({p["city"] for p in properties}),
            today=today,
        )
        if hot_rooms > 0:
            check_in = today + timedelta(days=HOT_FIRST_DAY + self.rng.randrange(40))
            stay = Stay(check_in, check_in + timedelta(days=HOT_NIGHTS))
            for property_id in self.rng.sample(inventory.property_ids, len(inventory.property_ids)):
                free = self.client.get(
                    "/availability",
                    params={"property_id": property_id, "guests": 1, **stay.params()},
                    name="GET /availability (discover)",
                ).json()
                inventory.hot_rooms += [HotRoom(property_id, r["room_id"]) for r in free.get("rooms", [])]
                if len(inventory.hot_rooms) >= hot_rooms:
                    break
            inventory.hot_rooms = inventory.hot_rooms[:hot_rooms]
            inventory.hot_stay = stay
        return inventory

    # the tasks -------------------------------------------------------------------------------
    def search(self) -> None:
        if self.inventory.cities and self.rng.random() < 0.2:
            params = {"city": self.rng.choice(self.inventory.cities)}
            self._request("search", "GET", "/properties", name="GET /properties?city=", params=params)
            return
        stay = self.inventory.spread_stay(self.rng)
        params = {"property_id": self.rng.choice(self.inventory.property_ids), "guests": 1, **stay.params()}
        self._request("search", "GET", "/availability", name="GET /availability", params=params)

    def book(self) -> None:
        card = self.rng.choices(self.cards, weights=self.card_weights)[0]
        token = self.client.post(
            f"{self.gateway_url}/v1/tokens",
            json={"number": card.number, "exp_month": 12, "exp_year": date.today().year + 3, "cvc": "123"},
            name="POST /v1/tokens",
        )
        if token.status_code != 201:
            shared.outcomes[f"book tokenize {outcome_key(token.status_code, _json(token))}"] += 1
            return
        key, customer = str(uuid.uuid4()), self.customers.next()
        body = self._booking_body() | {
            "guest": guest_of(customer),
            "payment": {"method": "card", "token": token.json()["token"], "card_last_four": token.json()["last4"]},
        }
        if "room_id" not in body and self.rng.random() < QUOTED_SHARE:
            self._take_quote(body)
        status, answer = self._request(
            "book", "POST", "/bookings", name="POST /bookings", json=body,
            headers={"Idempotency-Key": key, **self._auth(customer)}, customer=customer,
        )  # fmt: skip
        if stored_booking_id(Answer(status, answer)):  # stored under the key: a duplicate must get it back
            if len(shared.sent) >= MAX_REMEMBERED:
                shared.sent.pop(0)
            shared.sent.append((key, customer, body, status, answer))

    def cancel(self) -> None:
        if not shared.cancellable:
            self.book()
            return
        booking_id, customer = shared.cancellable.pop(self.rng.randrange(len(shared.cancellable)))
        self._request(
            "cancel", "POST", f"/bookings/{booking_id}/cancel", name="POST /bookings/[id]/cancel",
            headers=self._auth(customer),
        )  # fmt: skip

    def duplicate(self) -> None:
        if not shared.sent:
            self.book()
            return
        key, customer, body, status, answer = self.rng.choice(shared.sent)
        with self.client.post(
            "/bookings", json=body, headers={"Idempotency-Key": key, **self._auth(customer)},
            name="POST /bookings (duplicate)", catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code == status and _json(response) == answer:
                shared.outcomes[f"duplicate {outcome_key(status, answer)}"] += 1
                response.success()
            else:
                shared.outcomes[f"duplicate {DUPLICATE_MISMATCH}"] += 1
                response.failure(DUPLICATE_MISMATCH)

    # helpers ---------------------------------------------------------------------------------
    def _take_quote(self, body: dict) -> None:
        """Search first and book the cheapest free room at the quote the availability answer gives."""
        params = {k: body[k] for k in ("property_id", "check_in", "check_out", "guests")}
        status, answer = self._request("search", "GET", "/availability", name="GET /availability", params=params)
        rooms = answer.get("rooms") if status == 200 and isinstance(answer, dict) else None
        if rooms:
            body |= {"room_id": rooms[0]["room_id"], "quote_id": rooms[0]["quote_id"]}
            body.pop("room_type", None)

    def _booking_body(self) -> dict:
        inv = self.inventory
        body = {"source": self.rng.choice(SOURCES)}
        if inv.hot_rooms and inv.hot_stay and self.rng.random() < self.environment.parsed_options.hot_share:
            room = self.rng.choice(inv.hot_rooms)
            return (
                body | {"property_id": room.property_id, "room_id": room.room_id, "guests": 1} | inv.hot_stay.params()
            )
        stay = inv.spread_stay(self.rng)
        body |= {"property_id": self.rng.choice(inv.property_ids), "guests": 1} | stay.params()
        if self.rng.random() < ROOM_TYPE_SHARE:
            body["room_type"] = self.rng.choice((*ROOM_TYPES, "single"))
        return body

    def _auth(self, customer: str) -> dict[str, str]:
        return self.customers.auth(customer)

    def _request(
        self, operation: str, method: str, path: str, *, name: str, customer: str = "", **kwargs
    ) -> tuple[int, object]:
        """One request, counted by outcome; only an answer a working system would not give fails."""
        with self.client.request(method, path, name=name, catch_response=True, **kwargs) as response:
            answer = _json(response)
            outcome = outcome_key(response.status_code, answer) if response.status_code else "transport_error"
            shared.outcomes[f"{operation} {outcome}"] += 1
            if response.status_code in EXPECTED or outcome in EXPECTED_OUTCOMES:
                response.success()
                if response.status_code == 201 and isinstance(answer, dict) and answer.get("booking_id"):
                    shared.confirmed += 1
                    shared.cancellable.append((answer["booking_id"], customer))
            else:
                response.failure(outcome)
        return response.status_code, answer


def _json(response) -> object:
    try:
        return response.json()
    except Exception:  # noqa: BLE001 - no body, or not JSON: the status says enough
        return None
