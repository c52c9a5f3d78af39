"""confirmation-service's admin reads (``/admin``, token-protected, for ``bookline audit``): every
booking it confirmed (and whether it was cancelled since), and the card scan of its database."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from bookline.adapters.db import Database
from bookline.config import Settings
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
from bookline.services.confirmation.tables import bookings, metadata

SELECT_BOOKINGS = select(
    bookings.c.reservation_id,
    bookings.c.booking_id,
    bookings.c.status,
    bookings.c.confirmation_code,
    bookings.c.property_id,
    bookings.c.room_id,
    bookings.c.check_in,
    bookings.c.check_out,
    bookings.c.total_minor,
    bookings.c.currency,
    bookings.c.payment_transaction_id,
    bookings.c.created_at,
    bookings.c.updated_at,
)


def _view(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    out["check_in"] = row.check_in.isoformat()
    out["check_out"] = row.check_out.isoformat()
    out["nights"] = (row.check_out - row.check_in).days
    out["cancelled"] = row.status == "cancelled"
    return out


def add_admin_routes(app: FastAPI, settings: Settings, db: Database) -> None:
    # the guest's personal data is this service's to keep: its columns are not a finding of the data scan
    router = database_admin_router(settings, db, metadata, "confirmation-service", allowed=GUEST_COLUMNS)

    @router.get("/bookings")
    async def list_bookings(
        since: Since = None, after: After = None, limit: Limit = DEFAULT_PAGE_ROWS
    ) -> dict[str, Any]:
        """Bookings confirmed at or after ``since``: room, nights, code, and whether cancelled."""
        query = created_since(SELECT_BOOKINGS, bookings.c.created_at, since)
        async with db.read() as conn:
            page = await keyset_page(conn, query, [bookings.c.reservation_id], after=after, limit=limit)
        return {"bookings": [_view(r) for r in page.rows], "next": page.next}

    mount_admin(app, router)
