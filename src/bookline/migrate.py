"""``bookline migrate``: every service's database brought to its newest revision, once.

A deployment runs it as a one-shot job before the services (``deploy/compose.yaml``'s ``migrate``
service, the ``bookline-migrate`` Job of ``deploy/k8s``). Each service still upgrades its own database
as it starts, so the job is an ordering, not a requirement: the replicas that start beside it wait on
the same advisory lock (:mod:`bookline.adapters.migrations`) and find their schema at head.

It migrates ``BOOKLINE_DATABASE_URL`` (one schema per service, named with
``BOOKLINE_DB_SCHEMA_PREFIX``) or, without it, the SQLite file of each service under the data dir.
Running it again changes nothing.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from bookline.adapters.db import Database
from bookline.adapters.migrations import script_location, upgrade
from bookline.auth.files import private_dir
from bookline.config import SERVICES, ServiceSpec, Settings


@dataclass(frozen=True)
class Migrated:
    """One service's database before and after ``bookline migrate``."""

    service: str
    where: str  # the PostgreSQL schema, or the SQLite file (never the URL: it may hold a password)
    before: str | None  # the revision it was at (None: a new database)
    after: str | None
    head: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def migrations_of(service: ServiceSpec) -> str:
    """The Alembic folder of a service (``bookline/services/<key>/migrations``)."""
    package = importlib.import_module(f"bookline.services.{service.key}")
    assert package.__file__ is not None
    return script_location(package.__file__)


def head_of(location: str) -> str:
    """The newest revision of a migrations folder (each service has one line of revisions)."""
    cfg = Config()
    cfg.set_main_option("script_location", location)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if head is None:
        raise RuntimeError(f"{location} has no revision")
    return head


async def current_revision(db: Database) -> str | None:
    """The revision a service's database is at; None when it was never migrated."""
    schema = db.schema

    def read(conn: Connection) -> str | None:
        return MigrationContext.configure(conn, opts={"version_table_schema": schema}).get_current_revision()

    return await db.run_sync(read)


async def migrate_service(settings: Settings, service: ServiceSpec) -> Migrated:
    location = migrations_of(service)
    # the database a service opens as it starts (services/common/app.py service_database)
    db = Database(settings.database_url_of(service.name), schema=settings.schema_of(service.name))
    try:
        before = await current_revision(db)
        await upgrade(db, location)
        after = await current_revision(db)
    finally:
        await db.dispose()
    where = db.schema or str(make_url(db.url).database)
    return Migrated(service.name, where, before, after, head_of(location))


async def migrate_all(settings: Settings, services: tuple[ServiceSpec, ...] = SERVICES) -> list[Migrated]:
    """Migrate every service's database, one after the other; raise at the first that fails."""
    results = []
    for service in services:
        done = await migrate_service(settings, service)
        if done.after != done.head:
            raise RuntimeError(f"{service.name} is at revision {done.after}, not at its head {done.head}")
        results.append(done)
    return results


def run_migrate(settings: Settings, *, console: Console) -> int:
    """The body of ``bookline migrate``: 0 when every database is at head, 1 when one could not be."""
    if settings.schema_of(SERVICES[0].name) is None:
        private_dir(settings.data_dir)  # the SQLite files live there
    try:
        results = asyncio.run(migrate_all(settings))
    except (OSError, SQLAlchemyError, RuntimeError) as exc:
        console.print(f"[bold red]error:[/] migrations failed: {escape(f'{type(exc).__name__}: {exc}')}")
        return 1
    table = Table(title="migrations")
    for column in ("service", "database", "was at", "now at (head)", "change"):
        table.add_column(column)
    for done in results:
        change = "none" if not done.changed else "created" if done.before is None else "upgraded"
        table.add_row(done.service, done.where, done.before or "-", str(done.after), change)
    console.print(table)
    return 0
