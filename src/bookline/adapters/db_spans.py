"""One CLIENT span per database transaction: what a booking's database work costs it, at a fraction of
the cost of one span per statement.

A booking runs about forty statements in some twenty transactions over six databases. One span per
statement (the contrib SQLAlchemy instrumentation) made them more than half of a booking's spans,
and every span is paid for three times: made, kept, and encoded for export. A transaction is the unit
that succeeds or fails as a whole, so its span says what a reader needs: which database, how long,
which statements in what order (``db.transaction.operations``: SELECT, INSERT, UPDATE, ...) and how
many, and, when the database refused it, the error. Statement spans come back, as children of their
transaction's span, with ``BOOKLINE_TRACE_SQL_STATEMENTS=true``.

A transaction run under ``suppress_instrumentation()`` (the idle polls of background jobs, readiness
pings) makes no span.
"""

from __future__ import annotations

import contextlib
import sqlite3
from functools import lru_cache
from typing import Any

from opentelemetry import context, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError

# where a connection keeps the operations of its open transaction (Connection.info lives as long as
# the DBAPI connection; the list is there only while a traced transaction is open)
OPERATIONS_KEY = "bookline.transaction_operations"


@lru_cache(maxsize=1024)
def operation_of(statement: str) -> str:
    """The statement's operation: its first word (SELECT, INSERT, UPDATE, DELETE, WITH, ...)."""
    words = statement.lstrip().split(None, 1)
    return words[0].upper() if words else ""


def _note_statement(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    operations = conn.info.get(OPERATIONS_KEY)
    if operations is not None:
        operations.append(operation_of(statement))


def refusal(error: BaseException) -> str:
    """What a span may say of the database's refusal: never the statement, its parameters or a value
    (they hold guest data). SQLite's messages name the constraint, never a value ("UNIQUE constraint
    failed: room_nights.room_id, room_nights.night"). PostgreSQL's may quote one, in the DETAIL
    ("Key (id)=(...)") and in the message itself ('invalid input syntax for type integer: "..."'),
    so they give the SQLSTATE and the constraint's name instead."""
    if isinstance(error, sqlite3.Error):
        return str(error).split("\n", 1)[0]
    said = [type(error).__name__]
    if sqlstate := getattr(error, "sqlstate", None) or getattr(error, "pgcode", None):
        said.append(f"SQLSTATE {sqlstate}")
    for cause in (error, error.__cause__):
        if constraint := getattr(cause, "constraint_name", None):
            said.append(f"constraint {constraint}")
            break
    return ", ".join(said)


class TransactionSpans:
    """Makes the span of each transaction of one database (one service's)."""

    def __init__(self, tracer: trace.Tracer, engine: Engine, *, schema: str | None = None) -> None:
        """``schema``: the service's PostgreSQL schema (the namespace is then ``database|schema``)."""
        self.tracer = tracer
        url = engine.url
        self.system = "postgresql" if url.get_backend_name().startswith("postgres") else url.get_backend_name()
        database = url.database or ""
        if self.system == "sqlite":  # the file's name, not where the data directory happens to be
            self.namespace = database.rsplit("/", 1)[-1]
        else:
            self.namespace = f"{database}|{schema}" if schema else database
        self.name = f"transaction {self.namespace}"
        if not event.contains(engine, "before_cursor_execute", _note_statement):
            event.listen(engine, "before_cursor_execute", _note_statement)

    def around(self, conn: Any, *, readonly: bool) -> TransactionSpan | contextlib.nullcontext[None]:
        """The span of the transaction that runs on ``conn`` (a synchronous ``Connection``) meanwhile."""
        if not is_instrumentation_enabled():
            return _NOTHING
        return TransactionSpan(self, conn, readonly)


_NOTHING: contextlib.nullcontext[None] = contextlib.nullcontext()


class TransactionSpan:
    """The span of one transaction, current while it runs (a plain context manager: one is entered
    for every transaction, and a generator-based one costs several times as much)."""

    __slots__ = ("conn", "operations", "span", "token")

    def __init__(self, spans: TransactionSpans, conn: Any, readonly: bool) -> None:
        attributes: dict[str, Any] = {"db.system.name": spans.system, "db.namespace": spans.namespace}
        if readonly:
            attributes["db.transaction.read_only"] = True
        self.conn = conn
        self.operations: list[str] = []
        self.span = spans.tracer.start_span(spans.name, kind=SpanKind.CLIENT, attributes=attributes)
        self.token: object = None

    def __enter__(self) -> None:
        self.conn.info[OPERATIONS_KEY] = self.operations
        self.token = context.attach(trace.set_span_in_context(self.span))

    def __exit__(self, _type: Any, exc: BaseException | None, _tb: Any) -> None:
        span = self.span
        self.conn.info.pop(OPERATIONS_KEY, None)
        operations = self.operations
        attributes: dict[str, Any] = {
            "db.transaction.statements": len(operations),
            "db.transaction.operations": operations,
        }
        if isinstance(exc, DBAPIError):
            original = exc.orig if exc.orig is not None else exc
            attributes["error.type"] = type(original).__name__
            span.set_status(Status(StatusCode.ERROR, refusal(original)))
        span.set_attributes(attributes)
        context.detach(self.token)
        span.end()
