"""The hot statements are built once, at import, so SQLAlchemy compiles each of them once: run again,
every one is a hit in its compiled cache and the cache does not grow. A statement that cannot be
cached (``on_conflict_do_update``, say) would be compiled on every call and fail this check."""

from datetime import date

import pytest
from sqlalchemy import MetaData, create_engine
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bookline.saga import store
from bookline.services.availability import statements as availability
from bookline.services.availability.tables import metadata as availability_tables
from bookline.services.booking.tables import metadata as booking_tables
from bookline.services.booking.tables import saga_steps
from bookline.services.gateway import statements as gateway
from bookline.services.gateway.tables import metadata as gateway_tables
from bookline.services.pricing import handlers as pricing
from bookline.services.pricing.tables import metadata as pricing_tables

NIGHTS = [date(2030, 1, 1), date(2030, 1, 2)]
HOLD = {
    "reservation_id": "r1",
    "property_id": "p1",
    "room_id": "p1-r1",
    "check_in": NIGHTS[0],
    "check_out": date(2030, 1, 3),
    "status": "held",
    "expires_at": 2.0,
    "created_at": 1.0,
    "updated_at": 1.0,
}
CLAIMS = [
    {"room_id": "p1-r1", "night": night, "reservation_id": "r1", "kind": "hold", "expires_at": 2.0} for night in NIGHTS
]
QUOTE = {
    "quote_id": "q1",
    "property_id": "p1",
    "room_id": "p1-r1",
    "check_in": NIGHTS[0],
    "check_out": NIGHTS[1],
    "guests": 2,
    "total_minor": 10_000,
    "currency": "EUR",
    "taxes_minor": 900,
    "lines": "[]",
    "rules_applied": "[]",
    "expires_at": 2.0,
    "created_at": 1.0,
}
KEY_ROW = {"idempotency_key": "k1", "operation_name": "capture"}

CASES = {
    "availability": (
        availability_tables,
        [
            (availability.INSERT_HOLD, HOLD),
            (availability.INSERT_CLAIM, CLAIMS),
            (availability.SELECT_HOLD, {"reservation": "r1"}),
            (
                availability.SELECT_ROOMS_WITH_FREE_FLAG,
                {"property_id": "p1", "check_in": NIGHTS[0], "check_out": NIGHTS[1], "now": 1.5},
            ),
            (availability.SELECT_ROOM_WITH_HOLD, {"room_id": "p1-r1", "reservation": "r1"}),
            (availability.DELETE_EXPIRED_CLAIMS_OF_NIGHTS, {"room_id": "p1-r1", "nights": NIGHTS, "now": 1.5}),
            (availability.BOOK_HELD_CLAIMS, {"reservation": "r1", "now": 1.5}),
            (availability.SET_HOLD_STATUS, {"reservation": "r1", "new_status": "committed", "now": 1.5}),
        ],
    ),
    "pricing": (
        pricing_tables,
        [(pricing.INSERT_QUOTE, QUOTE), (pricing.SELECT_QUOTE, {"quote_id": "q1"})],
    ),
    "gateway": (
        gateway_tables,
        [
            (
                gateway.CLAIM_IDEMPOTENCY_KEY,
                {"key": "k1", "operation": "capture", "request_hash": "h", "created_at": 1.0},
            ),
            (gateway.SELECT_IDEMPOTENCY_KEY, KEY_ROW),
            (gateway.RECORD_REPLY, {**KEY_ROW, "reply_status": 200, "reply_body": "{}"}),
            (
                gateway.UPDATE_AUTHORIZATION,
                {"status": "captured", "captured_minor": 1, "updated_at": 1.0, "authorization": "a1"},
            ),
        ],
    ),
    "booking saga": (
        booking_tables,
        [
            (store.UPSERT_STEPS, {"booking_id": "b1", "step": "hold", "status": "started", "updated_at": 1.0}),
            (store.UPDATE_BOOKING, {"status": "confirmed", "updated_at": 1.0, "booking": "b1"}),
            (store.SELECT_STEPS, {"booking_id": "b1"}),
        ],
    ),
}


def run_twice(metadata: MetaData, statements: list) -> list[tuple[list[bool], int]]:
    """Run ``statements`` twice on a fresh SQLite engine, each time in a transaction that is rolled
    back; per run, whether each execution was a hit in the compiled cache we own, and its size."""
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    cache: dict = {}
    runs = []
    with engine.connect() as conn:
        conn = conn.execution_options(compiled_cache=cache)
        for _ in range(2):
            with conn.begin() as transaction:
                hits = [conn.execute(s, p).context.cache_hit == engine.dialect.CACHE_HIT for s, p in statements]
                transaction.rollback()
            runs.append((hits, len(cache)))
    return runs


@pytest.mark.parametrize("service", CASES)
def test_each_prebuilt_statement_is_compiled_once_then_found_in_the_cache(service):
    metadata, statements = CASES[service]
    (first, size_after_first), (second, size_after_second) = run_twice(metadata, statements)
    assert first == [False] * len(statements)
    assert size_after_first == len(statements)
    assert second == [True] * len(statements)
    assert size_after_second == size_after_first


def test_a_statement_sqlalchemy_cannot_cache_fails_the_check():
    upsert = sqlite_insert(saga_steps).values(booking_id="b1", step="hold", status="started", updated_at=1.0)
    upsert = upsert.on_conflict_do_update(
        index_elements=["booking_id", "step"], set_={"status": upsert.excluded.status}
    )
    (_first, _), (second, size) = run_twice(booking_tables, [(upsert, None)])
    assert second == [False]  # compiled again on every call
    assert size == 0
