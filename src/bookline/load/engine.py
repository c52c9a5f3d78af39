"""The scheduler of a run: each arrival starts at its due time whatever happened before it.

``--concurrency`` caps the requests in flight. An arrival that finds the cap reached is not queued
(a queue would start it late and make the system look faster than it is): it is counted as
``dropped``. Latency is measured from the arrival's due time, not from when it was sent, so a
scheduler running late shows up in the figures instead of hiding in them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from bookline.load.customers import Mint
from bookline.load.inventory import Inventory, discover
from bookline.load.operations import Bookings, Operations
from bookline.load.options import OPERATIONS, LoadOptions
from bookline.load.schedule import plan
from bookline.load.stats import CLIENT_ERROR, RunStats

Tick = Callable[[RunStats, float], None]


@dataclass
class RunResult:
    options: LoadOptions
    inventory: Inventory
    stats: RunStats
    bookings: Bookings
    duration_s: float  # from the first arrival's due time until the last answer


async def run_load(
    options: LoadOptions,
    *,
    on_tick: Tick | None = None,
    tick_s: float = 0.2,
    transport: httpx.AsyncBaseTransport | None = None,
    mint: Mint | None = None,
) -> RunResult:
    """Find the inventory, then send every planned arrival on time; raises
    :class:`~bookline.load.inventory.InventoryError` when booking-service cannot be used at all.
    ``transport`` replaces the network (tests of the scheduler alone); ``mint`` gives each simulated
    customer's bearer token (default: an unsigned placeholder, for such tests)."""
    rng = random.Random(options.seed)
    limits = httpx.Limits(max_connections=options.concurrency, max_keepalive_connections=options.concurrency)
    timeout = httpx.Timeout(options.timeout_s)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, transport=transport) as http:
        today = datetime.now(UTC).date()  # the services' calendar: a stay may not start before it
        inventory = await discover(http, options.url, hot_rooms=options.hot_rooms, rng=rng, today=today)
        operations = Operations(http, options, inventory, rng, mint or _placeholder_token)
        stats = RunStats.for_operations(OPERATIONS)
        duration_s = await _send_on_time(options, operations, stats, rng, on_tick, tick_s)
    return RunResult(options, inventory, stats, operations.bookings, duration_s)


async def _send_on_time(
    options: LoadOptions,
    operations: Operations,
    stats: RunStats,
    rng: random.Random,
    on_tick: Tick | None,
    tick_s: float,
) -> float:
    loop = asyncio.get_running_loop()
    arrivals = plan(options.rate, options.duration_s, options.mix, rng)
    in_flight: set[asyncio.Task[None]] = set()
    start = loop.time()
    ticker = asyncio.create_task(_tick(on_tick, stats, loop, start, tick_s)) if on_tick else None
    try:
        for arrival in arrivals:
            due = start + arrival.offset_s
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            if stats.in_flight >= options.concurrency:
                stats.was_dropped(arrival.operation)
                continue
            stats.started()
            task = asyncio.create_task(_one(operations, stats, arrival.operation, due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        # the run lasts its whole duration even when the last arrival came earlier
        if (rest := start + options.duration_s - loop.time()) > 0:
            await asyncio.sleep(rest)
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        for task in in_flight:
            task.cancel()
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
    elapsed = loop.time() - start
    if on_tick is not None:
        on_tick(stats, elapsed)
    return elapsed


async def _one(operations: Operations, stats: RunStats, planned: str, due: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        operation, outcome = await operations.perform(planned)
    except Exception as exc:  # noqa: BLE001 - a bug of the generator is counted, not allowed to stall the run
        operation, outcome = operations.actual_operation(planned), f"{CLIENT_ERROR} {type(exc).__name__}"
    stats.finished(operation, outcome, (loop.time() - due) * 1000)


async def _tick(on_tick: Tick, stats: RunStats, loop: asyncio.AbstractEventLoop, start: float, every: float) -> None:
    while True:
        on_tick(stats, loop.time() - start)
        await asyncio.sleep(every)


def _placeholder_token(user: str) -> str:
    return f"placeholder-{user}"
