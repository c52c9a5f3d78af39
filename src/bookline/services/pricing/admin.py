"""pricing-engine's admin reads (``/admin``, token-protected, for ``bookline audit``): the card scan of
its database (rate plans, rules and quotes)."""

from __future__ import annotations

from fastapi import FastAPI

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.services.common.admin import database_admin_router, mount_admin
from bookline.services.pricing.tables import metadata


def add_admin_routes(app: FastAPI, settings: Settings, db: Database) -> None:
    router = database_admin_router(settings, db, metadata, "pricing-engine")

    mount_admin(app, router)
