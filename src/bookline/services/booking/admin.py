"""booking-service's admin reads (``/admin``, token-protected, for ``bookline audit``): every booking
with its saga steps, and the card scan of its database."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import FastAPI, Query
from sqlalchemy import bindparam, select

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.domain.errors import InvalidRequest
from bookline.services.booking.tables import bookings, metadata, saga_steps
from bookline.services.common.admin import (
    DEFAULT_PAGE_ROWS,
    After,
    Limit,
    Since,
    created_since,
    database_admin_router,
    keyset_page,
    mount_admin,
)
from bookline.services.common.data_scan import GUEST_COLUMNS

_COLUMNS = (
    "booking_id",
    "reservation_id",
    "status",
    "outcome",
    "failure_code",
    "property_id",
    "room_id",
    "check_in",
    "check_out",
    "total_minor",
    "currency",
    "room_type",
    "cancellation_penalty_minor",
    "refund_minor",
    "payment_transaction_id",
    "confirmation_code",
    "created_at",
    "updated_at",
)
SELECT_BOOKINGS = select(*(bookings.c[name] for name in _COLUMNS), bookings.c.trace_parent)
SELECT_GUEST_NAMES = select(bookings.c.guest_name).where(bookings.c.guest_name.is_not(None)).distinct()
SELECT_STEPS_OF = select(saga_steps).where(saga_steps.c.booking_id.in_(bindparam("ids", expanding=True)))
# how many booking ids one IN list carries (SQLite's default limit of bound parameters is far above)
_IDS_PER_QUERY = 500
MAX_RESERVATIONS = 500


def _view(row: Any, steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {name: row._mapping[name] for name in _COLUMNS}
    for name in ("check_in", "check_out"):
        if isinstance(out[name], date):
            out[name] = out[name].isoformat()
    parent = row.trace_parent
    out["trace_id"] = parent.split("-")[1] if parent and parent.count("-") == 3 else None
    own = steps.get(row.booking_id, {})
    out["steps"] = {step: v["status"] for step, v in own.items()}
    out["steps_updated_at"] = {step: v["updated_at"] for step, v in own.items()}
    return out


async def _steps_of(conn: Any, booking_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    steps: dict[str, dict[str, dict[str, Any]]] = {}
    for i in range(0, len(booking_ids), _IDS_PER_QUERY):
        chunk = booking_ids[i : i + _IDS_PER_QUERY]
        for r in await conn.execute(SELECT_STEPS_OF, {"ids": chunk}):
            steps.setdefault(r.booking_id, {})[r.step] = {"status": r.status, "updated_at": r.updated_at}
    return steps


def add_admin_routes(app: FastAPI, settings: Settings, db: Database) -> None:
    # the guest's personal data is this service's to keep: its columns are not a finding of the data scan
    router = database_admin_router(settings, db, metadata, "booking-service", allowed=GUEST_COLUMNS)

    @router.get("/bookings")
    async def list_bookings(
        since: Since = None,
        reservation_id: Annotated[list[str] | None, Query()] = None,
        after: After = None,
        limit: Limit = DEFAULT_PAGE_ROWS,
    ) -> dict[str, Any]:
        """Bookings created at or after ``since`` (or the ones of the given reservations), each with
        its saga steps ({step: status}) and when each step last changed."""
        if reservation_id and len(reservation_id) > MAX_RESERVATIONS:
            raise InvalidRequest("too_many_reservations", f"at most {MAX_RESERVATIONS} reservation_id per request")
        query = created_since(SELECT_BOOKINGS, bookings.c.created_at, since)
        if reservation_id:
            query = query.where(bookings.c.reservation_id.in_(reservation_id))
        async with db.read() as conn:
            page = await keyset_page(conn, query, [bookings.c.booking_id], after=after, limit=limit)
            steps = await _steps_of(conn, [r.booking_id for r in page.rows])
        return {"bookings": [_view(r, steps) for r in page.rows], "next": page.next}

    @router.get("/guest-names")
    async def guest_names(since: Since = None) -> dict[str, Any]:
        """The guests' names of the bookings created at or after ``since``: what the audit looks for,
        by value, everywhere a name must never be (a name has no pattern to find it by)."""
        query = created_since(SELECT_GUEST_NAMES, bookings.c.created_at, since)
        async with db.read() as conn:
            return {"names": [r.guest_name for r in await conn.execute(query)]}

    mount_admin(app, router)
