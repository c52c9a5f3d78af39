"""pricing-engine's admin reads (``/admin``, token-protected, for ``bookline audit``): the card scan of
its database (rate plans, rules and quotes)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.services.common.admin import admin_router, mount_admin
from bookline.services.common.card_scan import scan_tables
from bookline.services.pricing.tables import metadata


def add_admin_routes(app: FastAPI, settings: Settings, db: Database) -> None:
    router = admin_router(settings)

    @router.get("/card-scan")
    async def card_scan() -> dict[str, Any]:
        """Where pricing-engine's database holds something that is a card number (never the value)."""
        return (await scan_tables(db, metadata.sorted_tables)).body()

    mount_admin(app, router)
