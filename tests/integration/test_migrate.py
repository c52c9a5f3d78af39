"""``bookline migrate`` and concurrent migrations on a real PostgreSQL (127.0.0.1:5432, database ``test``).

Each test migrates under its own schema prefix and drops its schemas afterwards. Concurrency is
tested with separate processes: in one process every migration already takes its turn on an asyncio
lock (Alembic keeps its context in module globals), so only processes can race on the database.
A child process connects first, says ``ready`` and waits for ``go`` on its standard input: the
parent releases them all at once, so their upgrades start within a millisecond of each other.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bookline.adapters.migrations import migration_lock_key
from bookline.config import SERVICES, Settings
from bookline.migrate import head_of, migrate_all, migrations_of
from support.postgres import PG_URL, drop_schemas, new_prefix, require_postgres_async

pytestmark = pytest.mark.postgres

RAW_URL = PG_URL.replace("postgresql+asyncpg", "postgresql")
BOOKLINE = Path(sys.executable).with_name("bookline")  # the console script of pyproject.toml
HEADS = {s.name: head_of(migrations_of(s)) for s in SERVICES}
# migration_lock_key("booking"), as every release must compute it
PINNED_BOOKING_KEY = 5701327369275777222

# one migrator: connects, says ready, waits for "go", upgrades one service (argv: service, lock|nolock)
CHILD = """
import asyncio, sys
from bookline.adapters.db import Database
from bookline.adapters.migrations import upgrade
from bookline.config import SERVICE_BY_NAME, Settings
from bookline.migrate import migrations_of

async def main(name, serialize):
    settings = Settings()
    db = Database(settings.database_url_of(name), schema=settings.schema_of(name))
    location = migrations_of(SERVICE_BY_NAME[name])
    try:
        await db.ping()  # a warm pooled connection before the start signal
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await upgrade(db, location, serialize=serialize)
    finally:
        await db.dispose()

asyncio.run(main(sys.argv[1], sys.argv[2] == "lock"))
"""


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    await require_postgres_async()
    value = new_prefix()
    try:
        yield value
    finally:
        await drop_schemas(value)


def env_for(prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKLINE_", "OTEL_"))}
    return env | {"BOOKLINE_DATABASE_URL": PG_URL, "BOOKLINE_DB_SCHEMA_PREFIX": prefix, "OTEL_SDK_DISABLED": "true"}


async def run_bookline(prefix: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BOOKLINE),
        *args,
        env=env_for(prefix) | {"COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode()


async def start_migrators(prefix: str, service: str, count: int, *, lock: bool) -> list[asyncio.subprocess.Process]:
    """``count`` child processes, each connected and waiting for the start signal."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            service,
            "lock" if lock else "nolock",
            env=env_for(prefix),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert line.strip() == b"ready", (await proc.stderr.read()).decode() if proc.stderr else line
    return procs


def go(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")


async def outcomes(procs: list[asyncio.subprocess.Process]) -> list[tuple[int, str]]:
    results = []
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        results.append((proc.returncode or 0, err.decode()))
    return results


async def catalog(prefix: str) -> dict[str, object]:
    """Every schema of the prefix: its tables and columns, and the rows of its alembic_version."""
    conn = await asyncpg.connect(RAW_URL)
    try:
        columns = await conn.fetch(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema LIKE $1 ORDER BY 1, 2, 3",
            prefix + "%",
        )
        versions = {}
        for service in SERVICES:
            schema = prefix + service.key
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{schema}".alembic_version')
            versions[service.name] = (
                [r["version_num"] for r in await conn.fetch(f'SELECT version_num FROM "{schema}".alembic_version')]
                if exists
                else None
            )
    finally:
        await conn.close()
    return {"columns": [tuple(r) for r in columns], "versions": versions}


async def test_migrate_creates_every_schema_at_its_head(prefix):
    code, out = await run_bookline(prefix, "migrate")

    assert code == 0, out
    found = await catalog(prefix)
    assert found["versions"] == {name: [head] for name, head in HEADS.items()}
    schemas = {row[0] for row in found["columns"]}
    assert schemas == {prefix + s.key for s in SERVICES}
    # each schema holds its service's tables, not only the version table
    for service in SERVICES:
        tables = {row[1] for row in found["columns"] if row[0] == prefix + service.key}
        assert len(tables - {"alembic_version"}) >= 1, service.name
    assert out.count("created") == len(SERVICES)


async def test_migrate_again_changes_nothing(prefix):
    assert (await run_bookline(prefix, "migrate"))[0] == 0
    before = await catalog(prefix)

    code, out = await run_bookline(prefix, "migrate")

    assert code == 0, out
    assert await catalog(prefix) == before
    assert out.count("none") == len(SERVICES) and "created" not in out and "upgraded" not in out


async def test_migrate_all_reports_each_revision(prefix):
    settings = Settings(database_url=PG_URL, db_schema_prefix=prefix)

    first = await migrate_all(settings)
    second = await migrate_all(settings)

    assert [(m.service, m.where, m.before, m.after) for m in first] == [
        (s.name, prefix + s.key, None, HEADS[s.name]) for s in SERVICES
    ]
    assert all(not m.changed and m.before == m.after == m.head for m in second)


async def test_migrate_fails_with_exit_1_when_the_database_cannot_be_reached(prefix):
    env = env_for(prefix) | {"BOOKLINE_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/test"}
    proc = await asyncio.create_subprocess_exec(
        str(BOOKLINE), "migrate", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)

    assert proc.returncode == 1
    assert "migrations failed" in out.decode()


async def test_concurrent_upgrades_of_one_service_all_succeed_and_leave_one_version_row(prefix):
    procs = await start_migrators(prefix, "booking-service", 4, lock=True)
    go(procs)
    results = await outcomes(procs)

    assert [code for code, _ in results] == [0, 0, 0, 0], [err[-2000:] for _, err in results]
    found = await catalog(prefix)
    assert found["versions"]["booking-service"] == [HEADS["booking-service"]]


async def test_concurrent_migrate_commands_all_succeed(prefix):
    """Three `bookline migrate` at once, as three replicas' jobs would (every service, every schema)."""
    runs = await asyncio.gather(*(run_bookline(prefix, "migrate") for _ in range(3)))

    assert [code for code, _ in runs] == [0, 0, 0], [out[-2000:] for _, out in runs]
    found = await catalog(prefix)
    assert found["versions"] == {name: [head] for name, head in HEADS.items()}


async def held_lock(schema: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(RAW_URL)
    await conn.execute("SELECT pg_advisory_lock($1)", migration_lock_key(schema))
    return conn


async def schema_exists(schema: str) -> bool:
    conn = await asyncpg.connect(RAW_URL)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema))
    finally:
        await conn.close()


async def test_an_upgrade_waits_while_another_migrator_holds_the_schemas_lock(prefix):
    schema = prefix + "booking"
    holder = await held_lock(schema)
    try:
        procs = await start_migrators(prefix, "booking-service", 1, lock=True)
        go(procs)
        await asyncio.sleep(1.5)
        assert procs[0].returncode is None  # still waiting for the lock
        assert not await schema_exists(schema)
    finally:
        await holder.close()  # releases the lock, as a migrator's commit would
    assert [code for code, _ in await outcomes(procs)] == [0]
    assert (await catalog(prefix))["versions"]["booking-service"] == [HEADS["booking-service"]]


async def test_control_without_the_lock_an_upgrade_does_not_wait(prefix):
    # the same situation with the lock left out: the upgrade runs while the lock is held
    schema = prefix + "booking"
    holder = await held_lock(schema)
    try:
        procs = await start_migrators(prefix, "booking-service", 1, lock=False)
        go(procs)
        assert [code for code, _ in await outcomes(procs)] == [0]
        assert await schema_exists(schema)
    finally:
        await holder.close()


async def test_control_concurrent_upgrades_without_the_lock_fail(prefix):
    """Without the lock, migrators released together each find no version table, each create the
    schema and the tables, and all but one fail on PostgreSQL's unique catalog entries (or, had none
    failed, several rows could land in alembic_version). Their start is synchronized, and each
    upgrade is one transaction that lasts far longer than the spread of their starts."""
    procs = await start_migrators(prefix, "booking-service", 4, lock=False)
    go(procs)
    results = await outcomes(procs)

    failed = [err for code, err in results if code != 0]
    versions = (await catalog(prefix))["versions"]["booking-service"]
    assert failed or versions != [HEADS["booking-service"]], "four unlocked migrators did not collide"
    assert all("duplicate key" in err or "already exists" in err for err in failed), failed[0][-2000:]


def test_lock_key_is_stable_and_differs_per_schema():
    # a changed key would let old and new releases migrate one schema at once during a rolling deploy
    assert migration_lock_key("booking") == migration_lock_key("booking")
    assert migration_lock_key("booking") != migration_lock_key("availability")
    assert migration_lock_key("t1_booking") != migration_lock_key("booking")
    assert -(2**63) <= migration_lock_key("booking") < 2**63
    assert migration_lock_key("booking") == PINNED_BOOKING_KEY
