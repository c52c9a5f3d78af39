"""One span per database transaction (TELEMETRY.md, "Cost"), on SQLite and on PostgreSQL: what it
records, what it keeps out, and the per-statement spans that come back with a setting."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import Column, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.telemetry import setup_telemetry
from support.postgres import _RAW, PG_URL, new_prefix, require_postgres_async

GUEST_EMAIL = "ana.lima@example.com"
metadata = MetaData()
guests = Table("guests", metadata, Column("id", String, primary_key=True), Column("email", String))


@pytest.fixture(params=["sqlite", "postgresql"])
async def traced(request, tmp_path):
    """A database with the ``guests`` table, traced by a service's telemetry (statement spans on for
    the tests that ask with ``statements``)."""
    schema = None
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'booking.db'}")
    else:
        await require_postgres_async()
        schema = f"{new_prefix()}booking"
        conn = await asyncpg.connect(_RAW)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        db = Database(PG_URL, schema=schema)

    def create(conn) -> None:
        metadata.create_all(conn)
        conn.commit()

    await db.run_sync(create)
    exporter = InMemorySpanExporter()

    def trace(*, sql_statements: bool = False, setup: str = "bookline"):
        settings = Settings(data_dir=tmp_path, trace_sql_statements=sql_statements, telemetry_setup=setup)
        telemetry = setup_telemetry("booking-service", settings, span_exporter=exporter, export=False)
        telemetry.instrument_database(db)
        return telemetry

    try:
        yield db, exporter, trace, request.param, schema
    finally:
        await db.dispose()
        if schema is not None:
            conn = await asyncpg.connect(_RAW)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


async def test_a_transaction_is_one_span_with_its_operations_in_order(traced):
    db, exporter, trace, system, schema = traced
    telemetry = trace()
    with telemetry.tracer.start_as_current_span("step") as step:
        async with db.write() as conn:
            await conn.execute(insert(guests).values(id="g1", email=GUEST_EMAIL))
            await conn.execute(update(guests).where(guests.c.id == "g1").values(email="x"))
            await conn.execute(select(guests))
        async with db.read() as conn:
            await conn.execute(select(guests))
    spans = [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name == "bookline.db"]
    namespace = "booking.db" if system == "sqlite" else f"test|{schema}"
    assert [s.name for s in spans] == [f"transaction {namespace}"] * 2
    assert spans[0].attributes["db.namespace"] == namespace
    write, read = spans
    assert write.kind == SpanKind.CLIENT and write.parent.span_id == step.get_span_context().span_id
    assert write.attributes["db.system.name"] == system
    assert write.attributes["db.transaction.operations"] == ("INSERT", "UPDATE", "SELECT")
    assert write.attributes["db.transaction.statements"] == 3
    assert "db.transaction.read_only" not in write.attributes
    assert read.attributes["db.transaction.operations"] == ("SELECT",) and read.attributes["db.transaction.read_only"]
    assert write.status.status_code == StatusCode.UNSET
    # no statement span unless asked for
    assert not [s for s in exporter.get_finished_spans() if s.instrumentation_scope.name.endswith("sqlalchemy")]


async def test_a_refused_transaction_is_an_error_that_names_no_value(traced):
    db, exporter, trace, system, _ = traced
    trace()
    async with db.write() as conn:
        await conn.execute(insert(guests).values(id="g1", email="first"))
    exporter.clear()
    with pytest.raises(IntegrityError):
        async with db.write() as conn:
            await conn.execute(insert(guests).values(id="g1", email=GUEST_EMAIL))
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] in ("IntegrityError", "UniqueViolationError")
    assert span.attributes["db.transaction.operations"] == ("INSERT",)
    # the constraint the database refused it on, never the statement's parameters
    assert GUEST_EMAIL not in span.status.description and "g1" not in span.status.description
    if system == "sqlite":
        assert span.status.description == "UNIQUE constraint failed: guests.id"
    else:
        assert span.status.description == "IntegrityError, SQLSTATE 23505, constraint guests_pkey"


async def test_a_postgresql_refusal_that_quotes_a_value_is_not_repeated(traced):
    db, exporter, trace, system, _ = traced
    if system == "sqlite":
        pytest.skip("SQLite's messages quote no value")
    trace()
    with pytest.raises(DBAPIError) as refused:
        async with db.read() as conn:
            await conn.execute(text("SELECT CAST(CAST(:value AS text) AS integer)"), {"value": GUEST_EMAIL})
    assert GUEST_EMAIL in str(refused.value.orig)  # the control: PostgreSQL's message has the value
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert GUEST_EMAIL not in span.status.description
    assert span.status.description == "Error, SQLSTATE 22P02"  # invalid_text_representation
    assert not span.events


async def test_a_suppressed_transaction_leaves_no_span(traced):
    db, exporter, trace, _, _ = traced
    trace()
    with suppress_instrumentation():
        async with db.read() as conn:
            await conn.execute(select(guests))
        await db.ping()
    await db.ping()  # a readiness probe, even outside suppression
    assert exporter.get_finished_spans() == ()


async def test_statement_spans_come_back_under_their_transaction_with_the_setting(traced):
    db, exporter, trace, _, _ = traced
    trace(sql_statements=True)
    async with db.write() as conn:
        await conn.execute(insert(guests).values(id="g2", email="x"))
        await conn.execute(select(guests))
    spans = exporter.get_finished_spans()
    transaction = next(s for s in spans if s.instrumentation_scope.name == "bookline.db")
    statements = [s for s in spans if s.instrumentation_scope.name.endswith("sqlalchemy")]
    assert [s.name.split()[0] for s in statements] == ["INSERT", "SELECT"]
    assert all(s.parent.span_id == transaction.context.span_id for s in statements)


async def test_transactions_of_concurrent_tasks_keep_their_own_operations(traced):
    db, exporter, trace, _, _ = traced
    trace()

    async def reader(i: int) -> None:
        async with db.read() as conn:
            await conn.execute(select(guests))
            await asyncio.sleep(0)
            await conn.execute(select(guests).where(guests.c.id == str(i)))

    await asyncio.gather(*(reader(i) for i in range(5)))
    spans = exporter.get_finished_spans()
    assert len(spans) == 5
    assert all(s.attributes["db.transaction.operations"] == ("SELECT", "SELECT") for s in spans)


async def test_the_stock_set_up_traces_each_statement_and_no_transaction(traced):
    """What bench/bookings.py's stock mode measures: the contrib instrumentation, a span per statement."""
    db, exporter, trace, _, _ = traced
    trace(setup="stock")
    async with db.write() as conn:
        await conn.execute(insert(guests).values(id="g3", email="x"))
        await conn.execute(select(guests))
    spans = exporter.get_finished_spans()
    assert [s.name.split()[0] for s in spans] == ["INSERT", "SELECT"]
    assert {s.instrumentation_scope.name for s in spans} == {"opentelemetry.instrumentation.sqlalchemy"}
