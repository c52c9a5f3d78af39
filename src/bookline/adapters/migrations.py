"""Alembic migrations of each service, run programmatically when the service (or ``bookline seed``)
starts. Each service keeps its revisions in ``services/<name>/migrations/versions``."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from bookline.adapters.db import Database


def script_location(service_package_file: str) -> str:
    """The migrations folder beside a service's package ``__init__``."""
    return str(Path(service_package_file).parent / "migrations")


# Alembic keeps its running context in module globals, so two migrations in one process (the test
# suite runs every service in one event loop) must take turns.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def upgrade(db: Database, location: str) -> None:
    """Bring a service's database to the newest revision (safe to run from several processes)."""
    lock = _turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        await _upgrade_async(db, location)


async def _upgrade_async(db: Database, location: str) -> None:
    if db.schema:
        async with db.write() as conn:
            # serialize concurrent migrators of the same schema
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": db.schema})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
    await db.run_sync(_upgrade, location, db.schema)


def _upgrade(conn: Connection, location: str, schema: str | None) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", location)
    cfg.attributes["connection"] = conn
    cfg.attributes["schema"] = schema
    if schema:
        with conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
            command.upgrade(cfg, "head")
    else:
        command.upgrade(cfg, "head")


def run_env() -> None:
    """The body of every service's ``migrations/env.py``."""
    from alembic import context

    conn = context.config.attributes["connection"]
    schema = context.config.attributes.get("schema")
    context.configure(connection=conn, version_table_schema=schema, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
