"""PostgreSQL for tests: a fresh schema prefix per test, dropped afterwards.

Outside CI a missing server skips the test with a reason; with CI=true it fails it."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest

PG_URL = os.environ.get("BOOKLINE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
_RAW = PG_URL.replace("postgresql+asyncpg", "postgresql")


async def _reachable() -> str | None:
    try:
        conn = await asyncpg.connect(_RAW, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def _skip_or_fail(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI and is not reachable at {PG_URL}: {problem}")
    pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {problem}")


def require_postgres() -> None:
    """For a plain test: skip without PostgreSQL (fail with CI=true)."""
    _skip_or_fail(asyncio.run(_reachable()))


async def require_postgres_async() -> None:
    """The same, from inside a running event loop."""
    _skip_or_fail(await _reachable())


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}_"


async def drop_schemas(prefix: str) -> None:
    conn = await asyncpg.connect(_RAW)
    try:
        rows = await conn.fetch(
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE $1", prefix + "%"
        )
        for row in rows:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{row["schema_name"]}" CASCADE')
    finally:
        await conn.close()
