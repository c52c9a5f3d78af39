"""``bookline up`` run as a user runs it: seeded, on free ports, in a process of its own, with the
local telemetry store (unless the test sends telemetry elsewhere)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bookline.config import SERVICES, TELEMETRY_STORE
from support.stack import free_ports

UP_TIMEOUT_S = 90.0


@dataclass
class RunningUp:
    process: subprocess.Popen[str]
    urls: dict[str, str]
    data_dir: Path
    lines: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return self.urls[name]

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"

    def output(self) -> str:
        return "".join(self.lines)


def up_env(ports: dict[str, int], extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything that would point the stack elsewhere (a developer's
    URL overrides or OTLP endpoint), with the given ports and fast telemetry export."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("BOOKLINE_") or k.startswith("OTEL_EXPORTER_OTLP") or k == "OTEL_SDK_DISABLED")
    }
    env |= {f"BOOKLINE_{key.upper()}_PORT": str(port) for key, port in ports.items()}
    env |= {
        # spans and metrics reach the store within a second, not the SDK's default 5 s and 60 s
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "BOOKLINE_OUTBOX_POLL_INTERVAL_S": "0.05",
        "BOOKLINE_QUEUE_POLL_INTERVAL_S": "0.05",
    }
    env |= extra or {}
    return env


@contextmanager
def bookline_up(
    data_dir: Path,
    *,
    env: dict[str, str] | None = None,
    properties: int = 3,
    rooms_per_property: int = 6,
    args: Sequence[str] = (),
) -> Iterator[RunningUp]:
    """``bookline up`` on free ports with ``env``; ``args`` go on its command line (``--replicas 2``)."""
    specs = (*SERVICES, TELEMETRY_STORE)
    ports = dict(zip((s.key for s in specs), free_ports(len(specs)), strict=True))
    full_env = up_env(ports, env)
    subprocess.run(
        [sys.executable, "-m", "bookline", "seed", "--data-dir", str(data_dir), "--properties", str(properties),
         "--rooms-per-property", str(rooms_per_property)],
        env=full_env, check=True, capture_output=True,
    )  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "bookline", "up", "--data-dir", str(data_dir), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    running = RunningUp(process, {s.name: f"http://127.0.0.1:{ports[s.key]}" for s in specs}, data_dir)
    threading.Thread(target=lambda: running.lines.extend(process.stdout or ()), daemon=True).start()
    try:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while not any("Bookline is up" in line for line in running.lines):
            assert process.poll() is None, "bookline up exited:\n" + running.output()
            assert time.monotonic() < deadline, "not up in time:\n" + running.output()
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(fetch: Any, *, timeout: float = 30.0, interval: float = 0.25, what: str = "condition") -> Any:
    """Call ``fetch`` until it returns something truthy; that value, or an AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fetch()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
