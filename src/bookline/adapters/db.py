"""A service's own database: SQLite (WAL, ``BEGIN IMMEDIATE``) or PostgreSQL (one schema per service).

``Database.write()`` opens a write transaction; on SQLite it starts with ``BEGIN IMMEDIATE`` so two
writers never deadlock on a lock upgrade, and waits up to the busy timeout for the write lock.
``Database.read()`` opens a read transaction (a plain ``BEGIN`` on SQLite, which WAL lets run beside
the writer).

SQLite admits one writer at a time. Within a process, writers therefore queue on an asyncio lock
(first come, first served) before they take a pooled connection, instead of all spinning in SQLite's
busy handler; ``BEGIN IMMEDIATE`` and the busy timeout still arbitrate between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 10) -> None:
        self.url = url
        self.schema = schema
        self.is_sqlite = url.startswith("sqlite")
        self._writer_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        if self.is_sqlite:
            path = make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(url, pool_size=pool_size, max_overflow=0)
            _configure_sqlite(self.engine)
        else:
            connect_args = {"server_settings": {"search_path": schema}} if schema else {}
            self.engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=5, connect_args=connect_args
            )

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer_turn():
            async with self.engine.connect() as conn:
                async with conn.begin():
                    yield conn

    def _writer_turn(self) -> contextlib.AbstractAsyncContextManager:
        if not self.is_sqlite:
            return contextlib.nullcontext()
        loop = asyncio.get_running_loop()
        lock = self._writer_turns.get(loop)
        if lock is None:
            lock = self._writer_turns[loop] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(bookline_readonly=True)
            async with conn.begin():
                yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # let SQLAlchemy, not the driver, decide when transactions begin (see on_begin)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn):  # type: ignore[no-untyped-def]
        readonly = conn.get_execution_options().get("bookline_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
