"""What booking-service's rate limits cost per booking: the two hits a booking makes (per customer,
per address) on the ``limits`` library's in-memory storage, in µs of CPU, for each strategy.

The in-memory storage sweeps expired entries after a hit: for a moving window, every key's list of
timestamps through a worker thread (``asyncio.to_thread``), key after key; for a sliding-window
counter, two counters per key. The hits are spread over the event loop as a service's requests are
(a short sleep between bookings lets the sweep run), and the CPU of that loop without any hit is
taken away. Prints the best of ``--repeats`` runs for each strategy and number of customers.

    python bench/rate_limits.py [--bookings 4000] [--customers 120,2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter, RateLimiter, SlidingWindowCounterRateLimiter

STRATEGIES: dict[str, type[RateLimiter]] = {
    "moving window": MovingWindowRateLimiter,
    "sliding window counter": SlidingWindowCounterRateLimiter,
}
PAUSE_S = 0.0005  # between two bookings: the loop's other work, during which a sweep may run


async def _loop_only(bookings: int) -> float:
    started = time.process_time()
    for _ in range(bookings):
        await asyncio.sleep(PAUSE_S)
    return time.process_time() - started


async def _booking_hits(strategy: type[RateLimiter], bookings: int, customers: int) -> float:
    limiter = strategy(MemoryStorage())
    per_customer, per_address = parse("30/minute"), parse("120/minute")
    started = time.process_time()
    for i in range(bookings):
        await limiter.hit(per_customer, "bookings_per_customer", f"customer-{i % customers}")
        await limiter.hit(per_address, "bookings_per_address", f"10.0.{i % customers // 250}.{i % 250}")
        await asyncio.sleep(PAUSE_S)
    await asyncio.sleep(0.1)  # the last sweep
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=4000)
    parser.add_argument("--customers", default="120,2000", help="distinct customers (and addresses), comma-separated")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    base = min(asyncio.run(_loop_only(args.bookings)) for _ in range(args.repeats))
    print(f"{'strategy':<24} {'customers':>9} {'µs of CPU per booking (2 hits)':>32}")
    for customers in (int(c) for c in args.customers.split(",")):
        for name, strategy in STRATEGIES.items():
            best = min(asyncio.run(_booking_hits(strategy, args.bookings, customers)) for _ in range(args.repeats))
            print(f"{name:<24} {customers:>9} {(best - base) / args.bookings * 1e6:>32.1f}")


if __name__ == "__main__":
    main()
