"""``bookline serve telemetry`` as a process: what it acknowledged survives a hard kill, traces still
waiting for their sampling decision are decided by the next process, and the store never exports
its own telemetry into itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from bookline.services.telemetry.decode_pool import WORKER_BYTES
from support.otlp import INGEST, INGEST_TOKEN
from support.stack import free_ports

POLICY = """\
decision_wait: 6s
policies:
  - name: errors
    type: status_code
    status_code: {status_codes: [ERROR]}
"""


class StoreProcess:
    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        policy = data_dir / "policy.yaml"
        policy.write_text(POLICY)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKLINE_", "OTEL_"))}
        self.env.update(
            BOOKLINE_TELEMETRY_PORT=str(self.port),
            BOOKLINE_SAMPLING_POLICY_FILE=str(policy),
            BOOKLINE_TELEMETRY_INGEST_TOKEN=INGEST_TOKEN,
            **env,
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> StoreProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bookline", "serve", "telemetry", "--data-dir", str(self.data_dir)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"the store exited: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        raise AssertionError("the store did not become ready")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=15)
        self.proc.stderr.close()
        return code

    def stop_gracefully(self) -> None:
        """SIGTERM, as ``bookline up`` stops its children; the store must close its database."""
        # uvicorn shuts down, then re-raises the signal it caught: -SIGTERM is its normal exit
        assert self.stop() in (0, -signal.SIGTERM)
        # the last connection to close checkpoints the WAL into the database and removes it
        assert not (self.data_dir / "telemetry.db-wal").exists()

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10)


@pytest.fixture
def processes() -> Iterator[list[StoreProcess]]:
    started: list[StoreProcess] = []
    yield started
    for store in started:
        if store.proc is not None and store.proc.poll() is None:
            store.proc.kill()
            store.proc.wait()


def export_trace(url: str, *, failing: bool) -> str:
    """Export a three-span trace with the SDK; SimpleSpanProcessor returns once the store said 200."""
    provider = TracerProvider(resource=Resource.create({"service.name": "booking-service"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=INGEST)))
    tracer = provider.get_tracer("bookline")
    with tracer.start_as_current_span("POST /bookings") as root:
        with tracer.start_as_current_span("booking.create") as create:
            with tracer.start_as_current_span("booking.process_payment"):
                pass
            if failing:
                create.set_status(Status(StatusCode.ERROR, "Payment declined"))
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def large_export(url: str, trace_id: bytes, spans: int = 400) -> None:
    """A batch big enough to be decoded in the store's worker process."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "availability-service"
    scope = resource_spans.scope_spans.add()
    for i in range(spans):
        span = scope.spans.add(
            trace_id=trace_id,
            span_id=(i + 1).to_bytes(8, "big"),
            name="GET /availability",
            start_time_unix_nano=time.time_ns(),
            end_time_unix_nano=time.time_ns() + 1000,
        )
        span.attributes.add(key="availability.rooms_scanned").value.int_value = i
        span.attributes.add(key="padding").value.string_value = "x" * 100
    body = request.SerializeToString()
    assert len(body) > WORKER_BYTES
    answer = httpx.post(f"{url}/v1/traces", content=body, headers={"content-type": "application/x-protobuf", **INGEST})
    assert answer.status_code == 200


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return found


def test_acknowledged_spans_and_pending_decisions_survive_a_hard_kill(tmp_path: Path, processes: list):
    first = StoreProcess(tmp_path)
    processes.append(first.start())
    failed = export_trace(first.url, failing=True)
    succeeded = export_trace(first.url, failing=False)
    large_export(first.url, bytes.fromhex("ab" * 16))
    workers = children_of(first.proc.pid)
    assert workers, "the large export should have started a decoding worker"
    first.stop(signal.SIGKILL)  # no shutdown code runs: only what was committed is left
    # and the decoding worker does not outlive the store
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)

    second = StoreProcess(tmp_path)
    processes.append(second.start())
    assert len(second.get(f"/api/traces/{'ab' * 16}").json()["spans"]) == 400
    for trace_id in (failed, succeeded):
        stored = second.get(f"/api/traces/{trace_id}").json()
        assert stored["sampling"] == "pending"
        assert [s["name"] for s in stored["spans"]] == ["POST /bookings", "booking.create", "booking.process_payment"]
    assert second.get("/api/sampling").json()["pending"] == 3

    # the decision falls when the wait that began before the kill is over
    deadline = time.monotonic() + 20
    while second.get("/api/sampling").json()["pending"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert second.get(f"/api/traces/{failed}").json()["sampling"] == "kept"
    assert second.get(f"/api/traces/{succeeded}").status_code == 404
    second.stop_gracefully()


def test_a_gracefully_stopped_store_starts_again_with_its_kept_traces(tmp_path: Path, processes: list):
    first = StoreProcess(tmp_path)
    processes.append(first.start())
    trace_id = export_trace(first.url, failing=True)
    started = time.monotonic()
    first.stop_gracefully()
    assert time.monotonic() - started < 10

    second = StoreProcess(tmp_path)
    processes.append(second.start())
    assert len(second.get(f"/api/traces/{trace_id}").json()["spans"]) == 3
    second.stop_gracefully()


def test_the_store_does_not_export_its_own_telemetry_even_when_pointed_at_itself(tmp_path: Path, processes: list):
    store = StoreProcess(tmp_path)
    # what `bookline up` gives every child: the OTLP endpoint of the store, with short batch delays
    store.env.update(OTEL_BSP_SCHEDULE_DELAY="100", OTEL_METRIC_EXPORT_INTERVAL="200", OTEL_BLRP_SCHEDULE_DELAY="100")
    store.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = store.url
    processes.append(store.start())
    export_trace(store.url, failing=True)
    for _ in range(5):
        store.get("/api/traces")
        store.get("/api/services")
    time.sleep(1.5)  # several batch and metric intervals

    services = {s["name"] for s in store.get("/api/services").json()["services"]}
    assert services == {"booking-service"}
    assert store.get("/api/metrics").json()["metrics"] == []
    assert store.get("/api/logs").json()["logs"] == []
    store.stop_gracefully()
