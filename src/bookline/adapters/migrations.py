"""Alembic migrations of each service, run programmatically when the service (or ``bookline seed``,
or ``bookline migrate``) starts. Each service keeps its revisions in ``services/<name>/migrations/versions``.

Several processes may migrate the same database at the same moment: the replicas of a service that
start together, a deploy's migrate job beside them. On PostgreSQL each service's upgrade runs in one
transaction that first takes a transaction-level advisory lock keyed on the service's schema
(:func:`migration_lock_key`): the first migrator creates the schema and applies the revisions, the
others wait for its commit, then find the schema at head and do nothing. On SQLite the transaction
Alembic opens is ``BEGIN IMMEDIATE`` (see :mod:`bookline.adapters.db`), which serializes migrators of
one file the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from bookline.adapters.db import Database

# the advisory-lock key space of Bookline's migrations, so that no other advisory lock collides with them
LOCK_NAMESPACE = b"bookline.migrations:"


def script_location(service_package_file: str) -> str:
    """The migrations folder beside a service's package ``__init__``."""
    return str(Path(service_package_file).parent / "migrations")


def migration_lock_key(schema: str) -> int:
    """The ``pg_advisory_xact_lock`` key of a schema's migrations: a signed 64-bit integer hashed from
    the schema's name in Python, the same in every process, release and PostgreSQL version (unlike
    ``hashtext``, an internal function whose results PostgreSQL does not promise to keep)."""
    digest = hashlib.blake2b(LOCK_NAMESPACE + schema.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# Alembic keeps its running context in module globals, so two migrations in one process (the test
# suite runs every service in one event loop) must take turns.
_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def upgrade(db: Database, location: str, *, serialize: bool = True) -> None:
    """Bring a service's database to the newest revision (safe to run from several processes at once).

    ``serialize=False`` leaves out the advisory lock: only for the control test that shows what the
    lock prevents (concurrent migrators of one schema then fail).
    """
    lock = _turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        await db.run_sync(_upgrade, location, db.schema, serialize)


def _upgrade(conn: Connection, location: str, schema: str | None, serialize: bool) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", location)
    cfg.attributes["connection"] = conn
    cfg.attributes["schema"] = schema
    if not schema:
        command.upgrade(cfg, "head")  # SQLite: Alembic's own transaction is BEGIN IMMEDIATE
        return
    # one transaction: the lock, the schema and every revision; the lock is released at its commit
    # (or when the connection dies), and a migrator that waited reads the version table only then
    with conn.begin():
        if serialize:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": migration_lock_key(schema)})
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        command.upgrade(cfg, "head")


def run_env() -> None:
    """The body of every service's ``migrations/env.py``."""
    from alembic import context

    conn = context.config.attributes["connection"]
    schema = context.config.attributes.get("schema")
    context.configure(connection=conn, version_table_schema=schema, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
