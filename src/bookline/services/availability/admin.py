"""availability-service's admin reads (``/admin``, token-protected, for ``bookline audit``): the holds,
the room-night claims and the card scan of its database."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.services.availability.tables import holds, metadata, room_night_claims
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

_claims = room_night_claims.c
# (room_id, night) is the claims' primary key, unless a control test took it off: the reservation
# keeps the page order a total one even then, so no duplicate claim falls between two pages
CLAIM_KEYS = [_claims.room_id, _claims.night, _claims.reservation_id]


def _hold_view(row: Any) -> dict[str, Any]:
    return {
        "reservation_id": row.reservation_id,
        "property_id": row.property_id,
        "room_id": row.room_id,
        "check_in": row.check_in.isoformat(),
        "check_out": row.check_out.isoformat(),
        "nights": (row.check_out - row.check_in).days,
        "status": row.status,
        "expires_at": row.expires_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _claim_view(row: Any) -> dict[str, Any]:
    return {
        "room_id": row.room_id,
        "night": row.night.isoformat(),
        "reservation_id": row.reservation_id,
        "kind": row.kind,
        "expires_at": row.expires_at,
    }


def add_admin_routes(app: FastAPI, settings: Settings, db: Database) -> None:
    router = database_admin_router(settings, db, metadata, "availability-service")

    @router.get("/holds")
    async def list_holds(since: Since = None, after: After = None, limit: Limit = DEFAULT_PAGE_ROWS) -> dict[str, Any]:
        """Holds placed at or after ``since``, whatever became of them (held, committed, released,
        expired), with their expiry and last change."""
        query = created_since(select(holds), holds.c.created_at, since)
        async with db.read() as conn:
            page = await keyset_page(conn, query, [holds.c.reservation_id], after=after, limit=limit)
        return {"holds": [_hold_view(r) for r in page.rows], "next": page.next}

    @router.get("/claims")
    async def list_claims(since: Since = None, after: After = None, limit: Limit = DEFAULT_PAGE_ROWS) -> dict[str, Any]:
        """Every room-night claim (a hold's or a booked night). A claim has no time of its own:
        ``since`` keeps those of reservations whose hold was placed at or after it."""
        query = select(room_night_claims)
        if since is not None:
            placed = select(holds.c.reservation_id).where(holds.c.created_at >= since)
            query = query.where(_claims.reservation_id.in_(placed))
        async with db.read() as conn:
            page = await keyset_page(conn, query, CLAIM_KEYS, after=after, limit=limit)
        return {"claims": [_claim_view(r) for r in page.rows], "next": page.next}

    mount_admin(app, router)
