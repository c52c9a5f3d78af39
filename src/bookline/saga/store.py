"""The durable side of the booking saga: bookings, the saga log and idempotency keys, in
booking-service's own database. Every method is one short transaction; none spans a network call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, bindparam, case, exists, insert, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from bookline.adapters.db import Database
from bookline.domain.booking import BookingStatus, check_transition, may_become
from bookline.domain.errors import NotFound
from bookline.saga.lease import Lease, LeaseLost, held_for, holding
from bookline.services.booking.tables import bookings, idempotency_keys, saga_steps

# a step still needs undoing while it is started (outcome unknown) or done
OPEN = ("started", "done")
# the payment reconciler's mark on a failed or cancelled booking: checked or repaired (never OPEN)
SETTLE_STEP = "settle"
# the same text on SQLite and PostgreSQL; SQLAlchemy cannot cache the compiled form of its own
# `on_conflict_do_update` construct and compiled it again for every step, the most frequent write
UPSERT_STEPS = text(
    f"INSERT INTO {saga_steps.name} (booking_id, step, status, updated_at) "
    "VALUES (:booking_id, :step, :status, :updated_at) "
    "ON CONFLICT (booking_id, step) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at"
)

# The other statements are built once, at import, too: constructing one on every call cost more CPU
# than running it. Parameters of UPDATE statements are not named after columns (SQLAlchemy reserves
# those names for the SET clause): ``booking`` names the booking, ``idempotency_key`` the key.
SELECT_KEY = select(idempotency_keys).where(idempotency_keys.c.key == bindparam("key"))
SELECT_KEY_OF_BOOKING = select(idempotency_keys.c.key).where(idempotency_keys.c.booking_id == bindparam("booking_id"))
INSERT_KEY = insert(idempotency_keys)
_STORE_RESPONSE = {
    "status": "done",
    "response_status": bindparam("reply_status"),
    "response_body": bindparam("reply_body"),
    "updated_at": bindparam("now"),
}
STORE_KEY_RESPONSE = (
    update(idempotency_keys).where(idempotency_keys.c.key == bindparam("idempotency_key")).values(_STORE_RESPONSE)
)
STORE_BOOKING_KEY_RESPONSE = (
    update(idempotency_keys)
    .where(
        idempotency_keys.c.key == bindparam("idempotency_key"), idempotency_keys.c.booking_id == bindparam("booking")
    )
    .values(_STORE_RESPONSE)
)

INSERT_BOOKING = insert(bookings)
SELECT_BOOKING = select(bookings).where(bookings.c.booking_id == bindparam("booking_id"))
SELECT_BOOKING_BY_CODE = select(bookings).where(bookings.c.confirmation_code == bindparam("code"))
# no SET clause of its own: it sets the columns named in the parameters, besides ``booking``
UPDATE_BOOKING = update(bookings).where(bookings.c.booking_id == bindparam("booking"))
# the same, only while the booking's status is one of ``from_statuses``
UPDATE_BOOKING_FROM = UPDATE_BOOKING.where(bookings.c.status.in_(bindparam("from_statuses", expanding=True)))
# both, only for the holder of the booking's lease (its fencing token); the first carries a held lease
# on until ``until`` (a lease given up at the saga's end, its owner cleared, stays given up)
FENCED_UPDATE_BOOKING = UPDATE_BOOKING.where(bookings.c.fence == bindparam("held_fence")).values(
    lease_expires_at=case((bookings.c.lease_owner.is_not(None), bindparam("until")), else_=bookings.c.lease_expires_at)
)
FENCED_UPDATE_BOOKING_FROM = UPDATE_BOOKING_FROM.where(bookings.c.fence == bindparam("held_fence"))
SELECT_BOOKING_STATUS_AND_FENCE = select(bookings.c.status, bookings.c.fence).where(
    bookings.c.booking_id == bindparam("booking_id")
)
_BOOKING_COLUMNS = frozenset(bookings.c.keys())
# a customer's bookings, newest first, after a (created_at, booking_id) key
SELECT_BOOKINGS_OF_USER = (
    select(bookings)
    .where(bookings.c.user_id == bindparam("user_id"))
    .order_by(bookings.c.created_at.desc(), bookings.c.booking_id.desc())
    .limit(bindparam("limit", type_=Integer))
)
SELECT_BOOKINGS_OF_USER_AFTER = SELECT_BOOKINGS_OF_USER.where(
    or_(
        bookings.c.created_at < bindparam("after_created"),
        and_(bookings.c.created_at == bindparam("after_created"), bookings.c.booking_id < bindparam("after_id")),
    )
)
SELECT_STEPS = select(saga_steps.c.step, saga_steps.c.status).where(saga_steps.c.booking_id == bindparam("booking_id"))

# a booking nobody holds: its lease ran out (or it never had one)
_LEASE_OVER = or_(bookings.c.lease_expires_at.is_(None), bookings.c.lease_expires_at < bindparam("now"))
SELECT_STALE_PENDING = (
    select(bookings)
    .where(
        bookings.c.status == BookingStatus.PENDING.value,
        bookings.c.updated_at < bindparam("stale_before"),
        _LEASE_OVER,
    )
    .limit(bindparam("limit", type_=Integer))
)
SELECT_STALE_WITH_OPEN_STEPS = (
    select(bookings)
    .join(saga_steps, saga_steps.c.booking_id == bookings.c.booking_id)
    .where(
        bookings.c.status != BookingStatus.PENDING.value,
        bookings.c.updated_at < bindparam("stale_before"),
        _LEASE_OVER,
        saga_steps.c.status.in_(OPEN),
        # steps that legitimately stay done once the booking is settled
        ~and_(
            bookings.c.status == BookingStatus.CONFIRMED.value,
            saga_steps.c.status == "done",
        ),
        ~and_(
            bookings.c.status == BookingStatus.CANCELLED.value,
            saga_steps.c.status == "done",
        ),
    )
    .distinct()
    .limit(bindparam("limit", type_=Integer))
)
# failed or cancelled bookings whose money the payment reconciler has not checked yet: every saga
# step settled (none started, and for a failed booking none left done), no ``settle`` step yet
_settle_step = saga_steps.alias("settle_step")
_open_step = saga_steps.alias("open_step")
SELECT_UNSETTLED = (
    select(bookings)
    .where(
        bookings.c.status.in_([BookingStatus.FAILED.value, BookingStatus.CANCELLED.value]),
        bookings.c.updated_at < bindparam("settled_before"),
        ~exists().where(_settle_step.c.booking_id == bookings.c.booking_id, _settle_step.c.step == SETTLE_STEP),
        ~exists().where(
            _open_step.c.booking_id == bookings.c.booking_id,
            or_(
                _open_step.c.status == "started",
                and_(_open_step.c.status == "done", bookings.c.status == BookingStatus.FAILED.value),
            ),
        ),
    )
    .order_by(bookings.c.updated_at)
    .limit(bindparam("limit", type_=Integer))
)
# the holder's lease carried on while its saga waits: while nobody took it over (the fence is the
# holder's, even if a late renewal finds it run out) and the holder has not given it up
RENEW_LEASE = (
    update(bookings)
    .where(
        bookings.c.booking_id == bindparam("booking"),
        bookings.c.fence == bindparam("held_fence"),
        bookings.c.lease_owner.is_not(None),
    )
    .values(lease_expires_at=bindparam("until"))
)
# the lease of a booking nobody holds, taken by one replica: the fence it was seen with goes up by one,
# so of two replicas that saw the same fence only one takes it, and the old holder's writes stop counting
TAKE_LEASE = (
    update(bookings)
    .where(bookings.c.booking_id == bindparam("booking"), bookings.c.fence == bindparam("seen_fence"), _LEASE_OVER)
    .values(fence=bookings.c.fence + 1, lease_owner=bindparam("owner"), lease_expires_at=bindparam("until"))
)


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` if each names a column of bookings: a prebuilt statement ignores other names
    where ``.values()`` refused them, and a misspelt column must not be dropped silently."""
    unknown = values.keys() - _BOOKING_COLUMNS
    if unknown:
        raise ValueError(f"bookings has no column {', '.join(sorted(unknown))}")
    return values


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict


class KeyTaken(Exception):
    """The idempotency key was claimed by another request between our look-up and our insert."""


class SagaStore:
    def __init__(self, db: Database, *, owner: str = "", lease_s: float = 15.0, fencing: bool = True) -> None:
        """``owner``: this replica (its service.instance.id); ``lease_s``: how long a saga holds its
        booking after its last write; ``fencing`` off (a control test only): any replica writes."""
        self.owner = owner
        self.lease_s = lease_s
        self.fencing = fencing
        self.db = db

    # idempotency -----------------------------------------------------------------------------
    async def find_key(self, key: str) -> Row | None:
        async with self.db.read() as conn:
            return (await conn.execute(SELECT_KEY, {"key": key})).first()

    async def start_booking(
        self,
        *,
        key: str | None,
        request_hash: str,
        booking: dict[str, Any],
        steps: dict[str, str] | None = None,
    ) -> Lease:
        """Claim the idempotency key and record the pending booking and its first step, atomically;
        the booking's lease is this replica's (fence 1)."""
        now = time.time()
        try:
            async with self.db.write() as conn:
                if key is not None:
                    await conn.execute(
                        INSERT_KEY,
                        {
                            "key": key,
                            "request_hash": request_hash,
                            "booking_id": booking["booking_id"],
                            "status": "in_flight",
                            "created_at": now,
                            "updated_at": now,
                        },
                    )
                await conn.execute(
                    INSERT_BOOKING,
                    {
                        **_columns(booking),
                        "status": BookingStatus.PENDING.value,
                        "created_at": now,
                        "updated_at": now,
                        "fence": 1,
                        "lease_owner": self.owner,
                        "lease_expires_at": now + self.lease_s,
                    },
                )
                await self._set_steps(conn, booking["booking_id"], steps, now)
        except IntegrityError as exc:
            raise KeyTaken() from exc
        return Lease(booking["booking_id"], 1)

    async def respond(self, key: str, response: StoredResponse) -> None:
        """Record the answer a key replays from now on (used when a key's booking is abandoned)."""
        async with self.db.write() as conn:
            await conn.execute(
                STORE_KEY_RESPONSE,
                {
                    "idempotency_key": key,
                    "reply_status": response.status,
                    "reply_body": json.dumps(response.body),
                    "now": time.time(),
                },
            )

    # bookings and steps ----------------------------------------------------------------------
    async def find_by_code(self, confirmation_code: str) -> Row | None:
        async with self.db.read() as conn:
            return (await conn.execute(SELECT_BOOKING_BY_CODE, {"code": confirmation_code})).first()

    async def get(self, booking_id: str) -> Row:
        async with self.db.read() as conn:
            row = (await conn.execute(SELECT_BOOKING, {"booking_id": booking_id})).first()
        if row is None:
            raise NotFound("booking_not_found", f"no booking {booking_id}")
        return row

    async def bookings_of(self, user_id: str, *, limit: int, after: tuple[float, str] | None = None) -> list[Row]:
        """A customer's bookings, newest first; ``after`` is the (created_at, booking_id) of the last
        one of the previous page."""
        params: dict[str, Any] = {"user_id": user_id, "limit": limit}
        query = SELECT_BOOKINGS_OF_USER
        if after is not None:
            query = SELECT_BOOKINGS_OF_USER_AFTER
            params |= {"after_created": after[0], "after_id": after[1]}
        async with self.db.read() as conn:
            return list(await conn.execute(query, params))

    async def steps(self, booking_id: str) -> dict[str, str]:
        async with self.db.read() as conn:
            rows = await conn.execute(SELECT_STEPS, {"booking_id": booking_id})
            return {r.step: r.status for r in rows}

    async def record(
        self,
        booking_id: str,
        steps: dict[str, str] | None = None,
        **booking_values: Any,
    ) -> None:
        """Set booking columns and step statuses in one transaction, as the holder of the booking's lease
        (which this write carries on); :class:`LeaseLost` if another replica took it over."""
        now = time.time()
        async with self.db.write() as conn:
            # the booking row first: on PostgreSQL its lock orders this write against a take-over
            values = {**_columns(booking_values), "updated_at": now}
            await self._update_booking(conn, booking_id, values, now=now, lease_until=now + self.lease_s)
            await self._set_steps(conn, booking_id, steps, now)

    async def _update_booking(
        self, conn: Any, booking_id: str, values: dict[str, Any], *, now: float, lease_until: float
    ) -> None:
        """Set ``values`` on the booking; as its lease holder, only while the lease is still ours, and
        carrying a live lease on until ``lease_until``."""
        lease = held_for(booking_id) if self.fencing else None
        if lease is None:
            if values:
                await conn.execute(UPDATE_BOOKING, {**values, "booking": booking_id})
            return
        params = {**values, "now": now, "until": lease_until, "booking": booking_id, "held_fence": lease.fence}
        if (await conn.execute(FENCED_UPDATE_BOOKING, params)).rowcount != 1:
            raise LeaseLost(message=f"booking {booking_id} was taken over by another replica")

    async def _set_steps(self, conn: Any, booking_id: str, steps: dict[str, str] | None, now: float) -> None:
        if not steps:
            return
        await conn.execute(
            UPSERT_STEPS,
            [{"booking_id": booking_id, "step": k, "status": v, "updated_at": now} for k, v in steps.items()],
        )

    async def finish(
        self,
        booking_id: str,
        *,
        status: BookingStatus,
        key: str | None,
        response: StoredResponse | None,
        steps: dict[str, str] | None = None,
        **booking_values: Any,
    ) -> None:
        """Move the booking to its final status and store the response its key replays, atomically."""
        now = time.time()
        lease = held_for(booking_id) if self.fencing else None
        params = {
            **_columns(booking_values),
            "status": status.value,
            "updated_at": now,
            "booking": booking_id,
            "from_statuses": may_become(status),
        }
        async with self.db.write() as conn:
            if lease is None:
                moved = await conn.execute(UPDATE_BOOKING_FROM, params)
            else:  # the saga is over: its lease is given up with its last write
                params |= {"held_fence": lease.fence, "lease_expires_at": now, "lease_owner": None}
                moved = await conn.execute(FENCED_UPDATE_BOOKING_FROM, params)
            if moved.rowcount != 1:
                # not a status it may leave for this one, or not ours any more: say which (raising rolls
                # the transaction back)
                current, fence = (await conn.execute(SELECT_BOOKING_STATUS_AND_FENCE, {"booking_id": booking_id})).one()
                if lease is not None and fence != lease.fence:
                    raise LeaseLost(message=f"booking {booking_id} was taken over by another replica")
                check_transition(BookingStatus(current), status)
            await self._set_steps(conn, booking_id, steps, now)
            if key is not None and response is not None:
                await conn.execute(
                    STORE_BOOKING_KEY_RESPONSE,
                    {
                        "idempotency_key": key,
                        "booking": booking_id,
                        "reply_status": response.status,
                        "reply_body": json.dumps(response.body),
                        "now": now,
                    },
                )

    async def key_of(self, booking_id: str) -> str | None:
        async with self.db.read() as conn:
            row = (await conn.execute(SELECT_KEY_OF_BOOKING, {"booking_id": booking_id})).first()
        return row.key if row else None

    # recovery --------------------------------------------------------------------------------
    async def needing_recovery(self, *, stale_before: float, limit: int = 50) -> list[Row]:
        """Bookings whose saga stopped: pending and quiet for a while, or ended with a step left open
        (a compensation, a capture or a refund that did not finish)."""
        async with self.db.read() as conn:
            params = {"stale_before": stale_before, "limit": limit, "now": time.time()}
            pending = (await conn.execute(SELECT_STALE_PENDING, params)).all()
            open_steps = (await conn.execute(SELECT_STALE_WITH_OPEN_STEPS, params)).all()
        return [*pending, *open_steps]

    async def unsettled(self, *, settled_before: float, limit: int = 100) -> list[Row]:
        """Failed or cancelled bookings, quiet since ``settled_before``, whose money is not checked yet."""
        async with self.db.read() as conn:
            return list(await conn.execute(SELECT_UNSETTLED, {"settled_before": settled_before, "limit": limit}))

    async def mark_settled(self, booking_id: str, how: str) -> None:
        """Record the payment reconciler's verdict (``checked`` or ``repaired``) without touching the
        booking's own ``updated_at``; the reconciler's lease is given up with it."""
        now = time.time()
        async with self.db.write() as conn:
            await self._update_booking(conn, booking_id, {"lease_owner": None}, now=now, lease_until=now)
            await self._set_steps(conn, booking_id, {SETTLE_STEP: how}, now)

    @asynccontextmanager
    async def keeping(self, lease: Lease) -> AsyncIterator[Lease]:
        """Hold ``lease`` for the block, renewing it every third of its length while the block runs
        (a step may wait on a slow dependency longer than the lease lasts); a renewal that finds the
        lease taken stops renewing, and the block's next write raises :class:`LeaseLost`."""
        with holding(lease):
            renewing = asyncio.create_task(self._renew(lease), name=f"lease-{lease.booking_id}")
            try:
                yield lease
            finally:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing

    async def _renew(self, lease: Lease) -> None:
        if not self.fencing:
            return
        while True:
            await asyncio.sleep(self.lease_s / 3)
            now = time.time()
            async with self.db.write() as conn:
                renewed = await conn.execute(
                    RENEW_LEASE, {"booking": lease.booking_id, "held_fence": lease.fence, "until": now + self.lease_s}
                )
            if renewed.rowcount != 1:
                return

    async def claim(self, booking_id: str, seen_fence: int) -> Lease | None:
        """Take the lease of a booking nobody holds (a stalled saga, a cancellation, a reconciliation);
        None if it is held, or another replica took it first."""
        if not self.fencing:  # a control test only: every replica believes the booking is its own
            return Lease(booking_id, seen_fence)
        now = time.time()
        async with self.db.write() as conn:
            result = await conn.execute(
                TAKE_LEASE,
                {"booking": booking_id, "seen_fence": seen_fence, "now": now, "owner": self.owner,
                 "until": now + self.lease_s},
            )  # fmt: skip
        return Lease(booking_id, seen_fence + 1) if result.rowcount == 1 else None
