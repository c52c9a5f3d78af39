"""The simulated customers of a load: a pool of user ids, each with its own bearer token.

booking-service limits ``POST /bookings`` per customer (``BOOKLINE_RATE_LIMIT_BOOKINGS_PER_CUSTOMER``,
30/minute), so a load whose bookings all came from one customer would measure that limit and nothing
else. The bookings of a run are dealt round-robin over a pool sized so that no customer books more
than a few times a minute. A token is minted once per customer (signing costs the generator CPU, and
booking-service verifies a token it has seen before only once) and again only when it nears its expiry.
A duplicate submit or a cancel goes out as the customer who booked: idempotency keys and bookings are
each customer's own.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Callable

# a customer of the pool gets at most this many arrivals over a run of any length (round-robin), so at
# most 20 bookings within any minute: under the 30 of the default per-customer limit
ARRIVALS_PER_CUSTOMER = 20
# below booking-service's cache of verified tokens (4096): every token is verified once. At the cap the
# per-customer limit binds only past 2,000 bookings a second, more than one machine sends.
MAX_CUSTOMERS = 4_000
TOKEN_REFRESH_S = 45 * 60.0  # the local issuer's tokens live an hour: a long run mints a fresh one before

Mint = Callable[[str], str]


def pool_size(arrivals: int) -> int:
    """How many customers a run of ``arrivals`` arrivals books as (at least one)."""
    return max(1, min(MAX_CUSTOMERS, math.ceil(arrivals / ARRIVALS_PER_CUSTOMER)))


class Customers:
    """``size`` customers named ``<prefix>-<run>-<n>`` (a run's own, so two runs never share one), and
    their tokens from ``mint`` (a local issuer's, or any identity provider's)."""

    def __init__(
        self, mint: Mint, size: int, *, prefix: str = "load", clock: Callable[[], float] = time.monotonic
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one customer")
        run = uuid.uuid4().hex[:8]
        self.ids = [f"{prefix}-{run}-{n}" for n in range(1, size + 1)]
        self._turns = itertools.cycle(self.ids)
        self._mint = mint
        self._clock = clock
        self._tokens: dict[str, tuple[float, str]] = {}  # customer -> (minted at, token)

    def __len__(self) -> int:
        return len(self.ids)

    def next(self) -> str:
        """The customer whose turn it is to book."""
        return next(self._turns)

    def auth(self, customer: str) -> dict[str, str]:
        """The ``Authorization`` header of ``customer``."""
        now = self._clock()
        minted = self._tokens.get(customer)
        if minted is None or now - minted[0] >= TOKEN_REFRESH_S:
            minted = self._tokens[customer] = (now, self._mint(customer))
        return {"Authorization": f"Bearer {minted[1]}"}

    @property
    def minted(self) -> int:
        """How many customers have a token (those that booked so far)."""
        return len(self._tokens)
