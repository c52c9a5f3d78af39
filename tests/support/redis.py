"""Redis for tests (the rate limits shared by replicas): outside CI a missing server skips the test
with a reason; with CI=true it fails it, as the PostgreSQL tests do."""

from __future__ import annotations

import os
import socket

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def redis_url() -> str:
    """The URL of the Redis every test may use, with a database of its own to keep keys apart."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            answer = conn.recv(64)
    except OSError as exc:
        answer, problem = b"", f"{type(exc).__name__}: {exc}"
    else:
        problem = None if answer.startswith(b"+PONG") else f"unexpected answer {answer!r}"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI and is not reachable at {REDIS_HOST}:{REDIS_PORT}: {problem}")
        pytest.skip(f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}: {problem}")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
