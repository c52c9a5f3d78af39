"""payment-gateway's admin reads (``/admin``, token-protected, for ``bookline audit``): its own
ledger of authorizations, which the audit holds Bookline's bookings against, and the card scan of
its database (where no card number may be either: only tokens and last four digits)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.redaction import scrub
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
from bookline.services.gateway.tables import authorizations, metadata

SELECT_AUTHORIZATIONS = select(
    authorizations.c.auth_id,
    authorizations.c.reservation_id,
    authorizations.c.idempotency_key,
    authorizations.c.status,
    authorizations.c.decline_reason,
    authorizations.c.amount_minor,
    authorizations.c.captured_minor,
    authorizations.c.refunded_minor,
    authorizations.c.currency,
    authorizations.c.created_at,
    authorizations.c.updated_at,
)


def _view(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    # the caller's own key: Bookline's are "auth-<reservation>", another client's is free text
    out["idempotency_key"] = scrub(row.idempotency_key)
    return out


def add_admin_routes(app: FastAPI, settings: Settings, db: Database) -> None:
    router = database_admin_router(settings, db, metadata, "the gateway")

    @router.get("/authorizations")
    async def list_authorizations(
        since: Since = None, after: After = None, limit: Limit = DEFAULT_PAGE_ROWS
    ) -> dict[str, Any]:
        """Authorizations made at or after ``since``, with what was captured and refunded of each
        (amounts in minor units), as the gateway's ledger has them."""
        query = created_since(SELECT_AUTHORIZATIONS, authorizations.c.created_at, since)
        async with db.read() as conn:
            page = await keyset_page(conn, query, [authorizations.c.auth_id], after=after, limit=limit)
        return {"authorizations": [_view(r) for r in page.rows], "next": page.next}

    mount_admin(app, router)
