"""``bookline up`` for real: every service as its own process, on free ports, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib.util import find_spec
from pathlib import Path

import httpx
import pytest

from bookline.config import SERVICES, TELEMETRY_STORE, Settings

pytestmark = pytest.mark.stack

UP_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (read from /proc, so no psutil)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_bookline_up_serves_every_service_and_sigterm_stops_them_all(tmp_path: Path) -> None:
    missing = [s.name for s in SERVICES if find_spec(f"bookline.services.{s.key}.api") is None]
    if missing:
        pytest.skip(f"not written yet: {', '.join(missing)}")
    ports = {f"BOOKLINE_{s.key.upper()}_PORT": str(free_port()) for s in (*SERVICES, TELEMETRY_STORE)}
    # our ports only, no URL overrides that would send the services to a running dev stack, and no
    # OTLP endpoint: telemetry goes to the local store that `bookline up` starts
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("BOOKLINE_") and k.endswith("_URL")) and not k.startswith("OTEL_EXPORTER_OTLP")
    }
    env |= ports
    up = subprocess.Popen(
        [sys.executable, "-m", "bookline", "up", "--data-dir", str(tmp_path / "var")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(up.stdout or ()), daemon=True).start()
    try:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while not any("Bookline is up" in line for line in lines):
            assert up.poll() is None, "bookline up exited:\n" + "".join(lines)
            assert time.monotonic() < deadline, "not up in time:\n" + "".join(lines)
            time.sleep(0.1)

        settings = Settings(**{k.removeprefix("BOOKLINE_").lower(): int(v) for k, v in ports.items()})
        for service in (*SERVICES, TELEMETRY_STORE):
            health = httpx.get(f"{settings.url_of(service.name)}/healthz", timeout=2, trust_env=False)
            assert health.status_code == 200, service.name
            assert health.json()["service"] == service.name
        processes = descendants(up.pid)
        assert len(processes) >= len(SERVICES) + 1

        sent = time.monotonic()
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()

    assert took < 5, f"stopping took {took:.1f} s"
    assert code == 0, "".join(lines)
    assert [pid for pid in processes if alive(pid)] == []
    assert (tmp_path / "var").is_dir()
