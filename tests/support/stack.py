"""The whole of Bookline for a test: every service on its own real localhost port, in one process.

Each service has its own telemetry (its own resource and ``service.name``) and all of them export
into one in-memory exporter, so a test can assert a booking's whole trace. The services talk over
real HTTP; only the processes are shared. Tests that must kill a service use ``ProcessStack``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from bookline.auth.provision import provision_keys
from bookline.config import SERVICES, Settings
from bookline.serve import app_factory, resolve_service
from bookline.telemetry import ServiceTelemetry, setup_telemetry

FAST = {
    "queue_poll_interval_s": 0.02,
    "outbox_poll_interval_s": 0.02,
    "payment_timeout_s": 0.5,
    "gateway_slow_response_s": 1.2,
    "saga_recovery_interval_s": 0.2,
    "saga_stale_after_s": 30.0,
    # many tests share one stack, one address and one customer: the limits have tests of their own
    "rate_limit_bookings_per_customer": "100000/minute",
    "rate_limit_bookings_per_address": "100000/minute",
    "rate_limit_failed_auth_per_address": "100000/minute",
    "rate_limit_lookups_per_address": "100000/minute",
}


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def stack_settings(data_dir: Path, **overrides: Any) -> Settings:
    ports = free_ports(len(SERVICES))
    values: dict[str, Any] = {f"{s.key}_port": p for s, p in zip(SERVICES, ports, strict=True)}
    values.update(FAST)
    values.update(overrides)
    return Settings(data_dir=data_dir, **values)


class InProcessStack:
    def __init__(self, settings: Settings, *, services: tuple[str, ...] | None = None) -> None:
        self.settings = settings
        self.exporter = InMemorySpanExporter()
        self.metric_readers: dict[str, InMemoryMetricReader] = {}
        self.telemetry: dict[str, ServiceTelemetry] = {}
        self.names = services or tuple(s.name for s in SERVICES)
        self._servers: dict[str, uvicorn.Server] = {}
        self._futures: dict[str, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def url(self, service: str) -> str:
        return self.settings.url_of(service)

    @property
    def key_dir(self) -> Path:
        return self.settings.key_dir

    def start(self) -> InProcessStack:
        provision_keys(self.settings)
        self._thread.start()
        for name in self.names:
            reader = InMemoryMetricReader()
            telemetry = setup_telemetry(name, self.settings, span_exporter=self.exporter, metric_readers=[reader])
            self.metric_readers[name] = reader
            self.telemetry[name] = telemetry
            self._serve(name)
        self.wait_ready()
        return self

    def _serve(self, name: str) -> None:
        app = app_factory(resolve_service(name))(self.settings, self.telemetry[name])
        config = uvicorn.Config(
            app,
            host=self.settings.host,
            port=self.settings.port_of(name),
            log_config=None,
            access_log=False,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        self._servers[name] = server
        self._futures[name] = asyncio.run_coroutine_threadsafe(server.serve(), self._loop)

    def stop_service(self, name: str) -> None:
        """Take one service down (its port refuses connections) until ``restart_service``."""
        self._servers[name].should_exit = True
        self._futures[name].result(timeout=10)

    def restart_service(self, name: str) -> None:
        self._serve(name)
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                try:
                    if httpx.get(f"{self.url(name)}/readyz", timeout=1).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        if pending:
            raise RuntimeError(f"services not ready: {sorted(pending)}")

    def stop(self) -> None:
        for server in self._servers.values():
            server.should_exit = True
        for future in self._futures.values():
            try:
                future.result(timeout=10)
            except Exception:  # noqa: BLE001 - a server that failed to stop cleanly is still stopped
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        for telemetry in self.telemetry.values():
            telemetry.shutdown()

    # telemetry queries ------------------------------------------------------------------------
    def spans(self, trace_id: str | None = None) -> list[Any]:
        spans = self.exporter.get_finished_spans()
        if trace_id is None:
            return list(spans)
        return [s for s in spans if format(s.context.trace_id, "032x") == trace_id]

    def metric_points(self, service: str, name: str) -> list[Any]:
        data = self.metric_readers[service].get_metrics_data()
        points = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


@contextmanager
def running_stack(data_dir: Path, **overrides: Any) -> Iterator[InProcessStack]:
    stack = InProcessStack(stack_settings(data_dir, **overrides)).start()
    try:
        yield stack
    finally:
        stack.stop()


class ProcessStack:
    """Every service as its own OS process (``bookline serve NAME``), for tests that kill one."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = env or {}
        self.procs: dict[str, subprocess.Popen] = {}
        provision_keys(settings)

    def url(self, service: str) -> str:
        return self.settings.url_of(service)

    @property
    def key_dir(self) -> Path:
        return self.settings.key_dir

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKLINE_", "OTEL_"))}
        for field, value in self.settings.model_dump().items():
            if isinstance(value, SecretStr):  # str() of a secret is its mask, not its value
                value = value.get_secret_value()
            if value is not None and not isinstance(value, (dict, list)):
                env[f"BOOKLINE_{field.upper()}"] = str(value)
        env.update(self.env)
        env.update(extra)
        return env

    def start(self, name: str, **extra: str) -> None:
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "bookline", "serve", name],
            env=self._env(extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_all(self) -> ProcessStack:
        for spec in SERVICES:
            self.start(spec.name)
        self.wait_ready([s.name for s in SERVICES])
        return self

    def wait_ready(self, names: list[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                try:
                    if httpx.get(f"{self.settings.url_of(name)}/readyz", timeout=1).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        if pending:
            raise RuntimeError(f"services not ready: {sorted(pending)}")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=10)

    def wait_exit(self, name: str, timeout: float = 30.0) -> int:
        proc = self.procs.pop(name)
        return proc.wait(timeout=timeout)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()
