"""NATS JetStream for tests: a stream of its own per test, deleted afterwards.

Outside CI a missing server (or one without JetStream) skips the test with a reason; with CI=true it
fails it, as the PostgreSQL and Redis tests do."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import nats
import pytest

NATS_URL = os.environ.get("BOOKLINE_TEST_NATS_URL", "nats://127.0.0.1:4222")


async def _reachable() -> str | None:
    try:
        nc = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0)
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"{type(exc).__name__}: {exc}"
    try:
        await nc.jetstream(timeout=3).account_info()
    except Exception as exc:  # noqa: BLE001 - a server without JetStream is no use either
        return f"JetStream is not enabled ({type(exc).__name__}: {exc})"
    finally:
        await nc.close()
    return None


def _skip_or_fail(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"NATS JetStream is required in CI and is not reachable at {NATS_URL}: {problem}")
    pytest.skip(f"NATS JetStream not reachable at {NATS_URL}: {problem}")


def require_nats() -> None:
    """For a plain test: skip without NATS JetStream (fail with CI=true)."""
    _skip_or_fail(asyncio.run(_reachable()))


async def require_nats_async() -> None:
    """The same, from inside a running event loop."""
    _skip_or_fail(await _reachable())


def new_stream_prefix() -> str:
    """A prefix of stream names (BOOKLINE_QUEUE_STREAM_PREFIX) no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}_"


async def delete_streams(prefix: str) -> list[str]:
    """Delete every stream whose name starts with ``prefix`` (with their consumers); their names."""
    nc = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        js = nc.jetstream(timeout=5)
        names = [name for name in await _stream_names(nc) if name.startswith(prefix)]
        for name in names:
            await js.delete_stream(name)
        return names
    finally:
        await nc.close()


async def _stream_names(nc: nats.NATS) -> list[str]:
    names: list[str] = []
    while True:
        answer = await nc.request("$JS.API.STREAM.NAMES", json.dumps({"offset": len(names)}).encode(), timeout=5)
        page = json.loads(answer.data).get("streams") or []
        names.extend(page)
        if not page:
            return names
