"""A service's own database: SQLite (WAL, ``BEGIN IMMEDIATE``) or PostgreSQL (one schema per service).

``Database.write()`` opens a write transaction and ``Database.read()`` a read transaction; both yield
a connection whose ``execute`` is awaited, whatever the engine.

On PostgreSQL that connection is SQLAlchemy's ``AsyncConnection`` over asyncpg.

On SQLite the statements run inline, on the event loop's thread, through the standard ``sqlite3``
driver. A service's SQLite file is its own and a statement there takes tens of microseconds, while
handing each one to a driver thread (as aiosqlite does) costs a thread switch per statement and,
on a loaded machine, a scheduler delay each time; a transaction of five statements then held the
write lock for milliseconds. Inline, a whole transaction runs without yielding. Writers of one
process still queue on an asyncio lock (first come, first served) so a transaction body that does
await something cannot interleave with another; ``BEGIN IMMEDIATE`` and the busy timeout arbitrate
between processes (``bookline seed`` beside a running service).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bookline.adapters.db_spans import TransactionSpans

SQLITE_BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


class InlineConnection:
    """The awaitable face of a synchronous SQLite connection (same calls as ``AsyncConnection``)."""

    def __init__(self, conn: Connection) -> None:
        self.sync_connection = conn

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self.sync_connection.execute(statement, parameters)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self.sync_connection, *args)


class Database:
    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 10, max_overflow: int = 5) -> None:
        """``pool_size`` and ``max_overflow``: PostgreSQL connections this process keeps, and may open
        beyond them under load (every replica of every service has its own pool: they add up)."""
        self.url = url
        self.schema = schema
        self.is_sqlite = url.startswith("sqlite")
        self._writer_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._async_engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._writer: Connection | None = None
        # the span of each transaction (``trace_transactions``); none until the service is traced
        self._spans: TransactionSpans | None = None
        if self.is_sqlite:
            sqlite_url = make_url(url).set(drivername="sqlite+pysqlite")
            path = sqlite_url.database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._sync_engine = create_engine(
                sqlite_url,
                pool_size=pool_size,
                max_overflow=10,
                connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            )
            _configure_sqlite(self._sync_engine)
        else:
            connect_args = {"server_settings": {"search_path": schema}} if schema else {}
            self._async_engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=max_overflow, connect_args=connect_args
            )

    @property
    def sync_engine(self) -> Engine:
        """The engine the SQLAlchemy instrumentation attaches to."""
        if self._sync_engine is not None:
            return self._sync_engine
        assert self._async_engine is not None
        return self._async_engine.sync_engine

    def trace_transactions(self, tracer: Any) -> None:
        """Give every transaction from now on a span of its own (see ``db_spans``)."""
        self._spans = TransactionSpans(tracer, self.sync_engine, schema=self.schema)

    def _span(self, conn: Connection, *, readonly: bool) -> contextlib.AbstractContextManager:
        return self._spans.around(conn, readonly=readonly) if self._spans is not None else contextlib.nullcontext()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Any]:
        async with self._writer_turn():
            if self._sync_engine is not None:
                # one connection serves every write of this process, in turn: no pool round trip
                if self._writer is None or self._writer.invalidated or self._writer.closed:
                    self._writer = self._sync_engine.connect()
                with self._span(self._writer, readonly=False), self._writer.begin():
                    yield InlineConnection(self._writer)
                return
            async with self._transaction(readonly=False) as conn:
                yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Any]:
        async with self._transaction(readonly=True) as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, *, readonly: bool) -> AsyncIterator[Any]:
        if self._sync_engine is not None:
            with self._sync_engine.connect() as sync_conn:
                if readonly:
                    sync_conn = sync_conn.execution_options(bookline_readonly=True)
                with self._span(sync_conn, readonly=readonly), sync_conn.begin():
                    yield InlineConnection(sync_conn)
            return
        assert self._async_engine is not None
        async with self._async_engine.connect() as conn:
            with self._span(conn.sync_connection, readonly=readonly):
                async with conn.begin():
                    yield conn

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(connection, *args)`` outside any transaction (migrations manage their own)."""
        if self._sync_engine is not None:
            with self._sync_engine.connect() as conn:
                return fn(conn, *args)
        assert self._async_engine is not None
        async with self._async_engine.connect() as conn:
            return await conn.run_sync(fn, *args)

    async def ping(self) -> None:
        # a readiness probe every few seconds is no transaction worth a trace
        with suppress_instrumentation():
            async with self.read() as conn:
                await conn.execute(text("SELECT 1"))

    def _writer_turn(self) -> contextlib.AbstractAsyncContextManager:
        if not self.is_sqlite:
            return contextlib.nullcontext()
        loop = asyncio.get_running_loop()
        lock = self._writer_turns.get(loop)
        if lock is None:
            lock = self._writer_turns[loop] = asyncio.Lock()
        return lock

    async def dispose(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        if self._async_engine is not None:
            await self._async_engine.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # let SQLAlchemy, not the driver, decide when transactions begin (see on_begin)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):  # type: ignore[no-untyped-def]
        readonly = conn.get_execution_options().get("bookline_readonly", False)
        # straight to the driver: a BEGIN is not a query worth a span of its own in every trace
        conn.connection.driver_connection.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _enable_wal(cursor: Any, attempts: int = 50) -> None:
    """Switch to WAL. SQLite answers "database is locked" at once, without the busy timeout, when
    another connection switches the same new file at the same moment: try again a few times."""
    import sqlite3
    import time

    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.02)
