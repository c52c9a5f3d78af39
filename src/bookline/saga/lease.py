"""Which replica a saga belongs to: a lease on the booking with an expiry and a fencing token.

The replica that starts a booking holds its lease (fence 1). Every write to the saga log checks the
fence and carries the lease on (``lease_expires_at`` = now + the lease's length): a saga that writes is
alive. A booking whose lease ran out (its replica died, or hangs) is taken by one other replica, which
raises the fence by one; from then on a write with the old fence changes nothing and raises
:class:`LeaseLost`, so a replica that comes back cannot undo or redo what the new owner decided.

The lease a task holds travels with it as a context variable (like the trace context), so the saga's
steps, its compensations and recovery write through the same store calls whoever holds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from bookline.domain.errors import Conflict


@dataclass(frozen=True)
class Lease:
    booking_id: str
    fence: int


class LeaseLost(Conflict):
    """Another replica took the booking over: this one must stop writing (and compensating)."""

    code = "lease_lost"


_held: ContextVar[Lease | None] = ContextVar("bookline_saga_lease", default=None)


@contextmanager
def holding(lease: Lease) -> Iterator[Lease]:
    """Run the block as the holder of ``lease``."""
    token = _held.set(lease)
    try:
        yield lease
    finally:
        _held.reset(token)


def held_for(booking_id: str) -> Lease | None:
    """The lease this task holds on ``booking_id``, if any."""
    lease = _held.get()
    return lease if lease is not None and lease.booking_id == booking_id else None
