"""``bookline load`` without a network: option parsing, the arrival schedule, percentiles, outcome
keys, the JSON shape, and the scheduler's honesty about arrivals it could not send (on a transport
that answers in-process)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from datetime import date

import httpx
import pytest

from bookline.load.customers import MAX_CUSTOMERS, TOKEN_REFRESH_S, Customers, pool_size
from bookline.load.engine import RunResult, run_load
from bookline.load.inventory import Inventory
from bookline.load.operations import Bookings
from bookline.load.options import (
    DEFAULT_CARDS,
    DEFAULT_MIX,
    TEST_CARDS,
    OptionError,
    build_options,
    parse_cards,
    parse_duration,
    parse_mix,
)
from bookline.load.report import to_json
from bookline.load.schedule import apportion, arrival_offsets, plan
from bookline.load.stats import DROPPED, RunStats, outcome_key, percentile


def options(**overrides):
    values = dict(
        rate=20.0, duration="3s", concurrency=8, mix=DEFAULT_MIX, hot_rooms=0, hot_share=None,
        cards=DEFAULT_CARDS, url="http://127.0.0.1:8000", gateway_url="http://127.0.0.1:8004",
        timeout_s=5.0, seed=1,
    )  # fmt: skip
    values.update(overrides)
    return build_options(**values)


# --mix ------------------------------------------------------------------------------------------
def test_the_default_mix_gives_each_operation_its_weight():
    assert parse_mix(DEFAULT_MIX) == {"search": 60, "book": 30, "cancel": 5, "duplicate": 5}


def test_an_operation_left_out_of_the_mix_gets_no_arrivals():
    assert parse_mix("book=1, duplicate=1") == {"search": 0, "book": 1, "cancel": 0, "duplicate": 1}


@pytest.mark.parametrize(
    ("mix", "says"),
    [
        ("search=60,fly=40", "unknown operation 'fly'"),
        ("search=-1,book=2", "must be a number >= 0"),
        ("search=nan", "must be a number >= 0"),
        ("search=lots", "is not a number"),
        ("search=0,book=0", "greater than 0"),
        ("search=1,search=2", "repeats"),
        ("search", "is not OPERATION=WEIGHT"),
        ("", "OPERATION=WEIGHT pairs"),
        ("search=1,,book=1", "OPERATION=WEIGHT pairs"),
    ],
)
def test_a_bad_mix_is_refused_with_what_is_wrong(mix, says):
    with pytest.raises(OptionError, match="--mix") as refused:
        parse_mix(mix)
    assert says in str(refused.value)


def test_a_card_number_pasted_into_the_mix_is_not_echoed():
    with pytest.raises(OptionError) as refused:
        parse_mix(f"{TEST_CARDS['approve']}=1")
    assert TEST_CARDS["approve"] not in str(refused.value)
    assert "entry 1" in str(refused.value)


# --duration -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("2m", 120), ("45", 45), ("2.5", 2.5), ("500ms", 0.5), ("1h", 3600)]
)
def test_durations_in_seconds_minutes_or_plain_numbers(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0", "0s", "-5s", "5x", "1m30s"])
def test_a_bad_duration_is_refused(text):
    with pytest.raises(OptionError, match="--duration"):
        parse_duration(text)


# --cards ----------------------------------------------------------------------------------------
def test_cards_by_name_or_by_number_are_known_by_their_label():
    cards = parse_cards(f"approve=8,{TEST_CARDS['decline']}=1,4111111111111111=1")
    assert [(c.label, c.last4, w) for c, w in cards] == [
        ("approve", "4242", 8), ("decline", "0002", 1), ("card_1111", "1111", 1)
    ]  # fmt: skip


def test_a_card_never_shows_its_number_in_a_repr_or_the_reported_config():
    chosen = options(cards="approve=1,decline=1,insufficient_funds=1,gateway_error=1,slow=1")
    shown = repr(chosen) + json.dumps(chosen.config_view())
    for number in TEST_CARDS.values():
        assert number not in shown
    assert chosen.config_view()["cards"] == dict.fromkeys(TEST_CARDS, 1.0)


@pytest.mark.parametrize("cards", ["visa=1", "4242=1", "42424242424242424242=1", "approve=1,4242424242424242=1"])
def test_a_bad_card_is_refused_without_echoing_it(cards):
    with pytest.raises(OptionError, match="--cards") as refused:
        parse_cards(cards)
    assert "4242" not in str(refused.value)


# the options together ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "option"),
    [
        ({"rate": 0}, "--rate"),
        ({"rate": -3}, "--rate"),
        ({"rate": float("inf")}, "--rate"),
        ({"concurrency": 0}, "--concurrency"),
        ({"hot_rooms": -1}, "--hot-rooms"),
        ({"hot_share": 0.5}, "--hot-share"),
        ({"hot_rooms": 2, "hot_share": 1.5}, "--hot-share"),
        ({"timeout_s": 0}, "--timeout"),
        ({"url": "localhost:8000"}, "--url"),
        ({"rate": 100_000, "duration": "1h"}, "--rate x --duration"),
        ({"cards": "approve=0,decline=0,slow=0"}, "--cards"),
    ],
)
def test_bad_options_name_the_option(overrides, option):
    with pytest.raises(OptionError) as refused:
        options(**overrides)
    assert str(refused.value).startswith(option)


def test_hot_rooms_aim_half_the_bookings_at_them_unless_told_otherwise():
    assert options(hot_rooms=2).hot_share == 0.5
    assert options(hot_rooms=2, hot_share=0.8).hot_share == 0.8
    assert options().hot_share == 0.0


# the schedule -----------------------------------------------------------------------------------
def test_arrivals_come_every_one_over_rate_seconds_and_all_before_the_end():
    offsets = arrival_offsets(20, 3)
    assert len(offsets) == 60
    assert offsets[0] == 0 and offsets[-1] < 3
    assert all(abs((b - a) - 0.05) < 1e-9 for a, b in zip(offsets, offsets[1:], strict=False))


def test_a_rate_below_one_per_second_still_arrives_on_time():
    assert arrival_offsets(0.5, 5) == [0, 2, 4]
    assert arrival_offsets(0.5, 4) == [0, 2]


def test_the_mix_is_apportioned_exactly_over_the_arrivals():
    assert apportion(100, parse_mix(DEFAULT_MIX)) == {"search": 60, "book": 30, "cancel": 5, "duplicate": 5}
    assert sum(apportion(7, parse_mix(DEFAULT_MIX)).values()) == 7
    assert apportion(3, {"search": 1, "book": 1, "cancel": 1, "duplicate": 0}) == {
        "search": 1, "book": 1, "cancel": 1, "duplicate": 0
    }  # fmt: skip


def test_a_plan_is_shuffled_in_the_mix_proportions_and_repeats_with_the_same_seed():
    first = plan(20, 10, parse_mix(DEFAULT_MIX), random.Random(5))
    again = plan(20, 10, parse_mix(DEFAULT_MIX), random.Random(5))
    other = plan(20, 10, parse_mix(DEFAULT_MIX), random.Random(6))
    assert first == again != other
    assert Counter(a.operation for a in first) == {"search": 120, "book": 60, "cancel": 10, "duplicate": 10}
    assert [a.operation for a in first[:10]] != ["search"] * 10  # not in blocks
    assert [a.offset_s for a in first] == arrival_offsets(20, 10)


# statistics -------------------------------------------------------------------------------------
def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 99) == 10
    assert percentile([7.0], 50) == 7
    assert percentile([], 50) is None


@pytest.mark.parametrize(
    ("status", "body", "key"),
    [
        (201, {"booking_id": "bk_1"}, "201"),
        (409, {"error": {"code": "lock_contention", "message": "held"}}, "409 lock_contention"),
        (402, {"error": {"code": "payment_declined"}}, "402 payment_declined"),
        (504, {"error": {"code": "dependency_timeout"}}, "504 dependency_timeout"),
        (500, None, "500"),
        (502, "Bad Gateway", "502"),
        (422, {"error": {"code": "Card 4242424242424242"}}, "422"),  # not a code: not shown
        (200, {"error": {"code": "looks_like_error"}}, "200"),
    ],
)
def test_outcome_keys_are_the_status_and_the_error_code(status, body, key):
    assert outcome_key(status, body) == key


# the report -------------------------------------------------------------------------------------
def test_the_json_summary_has_the_documented_shape():
    stats = RunStats.for_operations(("search", "book", "cancel", "duplicate"))
    for latency in (10.0, 20.0, 30.0):
        stats.started()
        stats.finished("book", "201", latency)
    stats.started()
    stats.finished("book", "409 lock_contention", 40.0)
    stats.was_dropped("book")
    bookings = Bookings()
    bookings.saw_confirmed("bk_1", "load-1")
    bookings.saw_confirmed("bk_1", "load-1")
    inventory = Inventory(property_ids=["prop-00001"], cities=["Lisbon"], today=date.today())
    report = to_json(RunResult(options(), inventory, stats, bookings, duration_s=2.0))

    assert json.loads(json.dumps(report)) == report
    assert set(report) >= {"config", "duration_s", "operations", "dropped", "bookings"}
    assert set(report["operations"]) == {"search", "book", "cancel", "duplicate"}
    book = report["operations"]["book"]
    assert book == {
        "count": 4,
        "rate_per_s": 2.0,
        "latency_ms": {"p50": 20.0, "p95": 40.0, "p99": 40.0, "max": 40.0},
        "outcomes": {"201": 3, "409 lock_contention": 1, DROPPED: 1},
    }
    assert report["operations"]["search"]["latency_ms"] == {"p50": None, "p95": None, "p99": None, "max": None}
    assert report["dropped"] == 1
    assert report["bookings"]["confirmed"] == ["bk_1"]
    assert stats.ok == 3 and stats.errors == 1 and stats.sent == 4 and stats.in_flight == 0


# the scheduler ----------------------------------------------------------------------------------
def slow_booking_service(delay_s: float) -> httpx.MockTransport:
    """A booking-service with one property whose searches take ``delay_s`` (in-process, no sockets)."""

    async def answer(request: httpx.Request) -> httpx.Response:
        lisbon = {"properties": [{"property_id": "prop-00001", "city": "Lisbon"}]}
        if request.url.path == "/properties" and "city" not in request.url.params:
            return httpx.Response(200, json=lisbon)  # finding the inventory, before the run
        await asyncio.sleep(delay_s)
        return httpx.Response(200, json=lisbon if request.url.path == "/properties" else {"rooms": []})

    return httpx.MockTransport(answer)


def test_arrivals_beyond_the_concurrency_cap_are_dropped_not_queued():
    chosen = options(rate=20, duration="1s", concurrency=1, mix="search=1")
    result = asyncio.run(run_load(chosen, transport=slow_booking_service(0.3)))
    search = result.stats.operations["search"]
    assert result.stats.dropped > 0
    assert search.outcomes[DROPPED] == result.stats.dropped
    assert search.count + result.stats.dropped == 20
    # never more than one in flight: each sent arrival waited for nobody, so none started late
    assert all(latency >= 299 for latency in search.latencies_ms)  # the clock may round a hair early


def test_latency_is_measured_from_the_due_time_and_every_arrival_is_sent_without_a_cap():
    chosen = options(rate=20, duration="1s", concurrency=100, mix="search=1")
    result = asyncio.run(run_load(chosen, transport=slow_booking_service(0.05)))
    search = result.stats.operations["search"]
    assert result.stats.dropped == 0
    assert search.count == 20 and search.outcomes == {"200": 20}
    assert min(search.latencies_ms) >= 49
    assert result.duration_s >= 1.0


# customers --------------------------------------------------------------------------------------
def test_the_pool_has_a_customer_per_twenty_arrivals_within_bounds():
    assert pool_size(0) == 1 and pool_size(1) == 1 and pool_size(20) == 1 and pool_size(21) == 2
    assert pool_size(60) == 3
    assert pool_size(10**9) == MAX_CUSTOMERS
    assert options(rate=300, duration="1s").customers == 15
    assert options().config_view()["customers"] == 3


def test_customers_take_turns_and_mint_their_token_once():
    minted = []
    now = [0.0]
    pool = Customers(lambda user: minted.append(user) or f"token-of-{user}", 3, clock=lambda: now[0])
    turns = [pool.next() for _ in range(7)]
    assert turns[:3] == pool.ids and turns[3:6] == pool.ids and turns[6] == pool.ids[0]
    assert len(set(pool.ids)) == 3 and all(re.match(r"^load-[0-9a-f]{8}-[123]$", user) for user in pool.ids)
    for user in turns:
        assert pool.auth(user) == {"Authorization": f"Bearer token-of-{user}"}
    assert sorted(minted) == sorted(pool.ids) and pool.minted == 3
    now[0] = TOKEN_REFRESH_S  # a token nearing its expiry is minted again
    pool.auth(pool.ids[0])
    assert minted.count(pool.ids[0]) == 2


def test_two_runs_never_share_a_customer():
    assert not set(Customers(str, 5).ids) & set(Customers(str, 5).ids)


def recording_booking_service(seen: list[tuple[str, str, dict]]) -> httpx.MockTransport:
    """A booking-service and gateway in-process that keep every booking under (customer, key), as the
    real one does, and let only the owner cancel; ``seen`` gets (path, Authorization, body)."""
    stored: dict[tuple[str, str], dict] = {}
    owners: dict[str, str] = {}

    async def answer(request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        body = json.loads(request.content) if request.content else {}
        seen.append((request.url.path, auth, body))
        if request.url.path == "/properties":
            return httpx.Response(200, json={"properties": [{"property_id": "prop-00001", "city": "Lisbon"}]})
        if request.url.path == "/v1/tokens":
            return httpx.Response(201, json={"token": "tok_" + "0" * 24, "last4": body["number"][-4:]})
        if request.url.path == "/bookings":
            key = (auth, request.headers["idempotency-key"])
            if key not in stored:
                stored[key] = {"booking_id": f"bk_{len(stored):024x}", "status": "confirmed"}
                owners[stored[key]["booking_id"]] = auth
            return httpx.Response(201, json=stored[key])
        if request.url.path.endswith("/cancel"):
            booking_id = request.url.path.split("/")[2]
            if owners.get(booking_id) != auth:
                return httpx.Response(404, json={"error": {"code": "booking_not_found"}})
            return httpx.Response(200, json={"booking_id": booking_id, "status": "cancelled"})
        return httpx.Response(200, json={"rooms": []})

    return httpx.MockTransport(answer)


def test_bookings_cancels_and_duplicates_go_out_as_the_customer_who_booked():
    seen: list[tuple[str, str, dict]] = []
    chosen = options(rate=50, duration="2s", concurrency=100, mix="book=4,cancel=1,duplicate=2", seed=3)
    result = asyncio.run(run_load(chosen, transport=recording_booking_service(seen), mint=lambda u: f"jwt-{u}"))
    books = [(auth, body) for path, auth, body in seen if path == "/bookings"]
    assert books and all(auth.startswith("Bearer jwt-load-") for auth, _ in books)
    assert all("user_id" not in body for _, body in books)
    assert 1 < len({auth for auth, _ in books}) <= chosen.customers == 5
    ops = result.stats.operations
    assert ops["duplicate"].count > 0 and "duplicate_mismatch" not in ops["duplicate"].outcomes
    assert ops["duplicate"].outcomes == {"201": ops["duplicate"].count}  # the same customer: the stored answer
    assert ops["cancel"].count > 0 and ops["cancel"].outcomes == {"200": ops["cancel"].count}  # the owner's token
    assert result.bookings.cancelled
