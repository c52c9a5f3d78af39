"""Telemetry store speed: spans ingested per second, and trace lookups with a million spans stored.

1. ingest: starts ``bookline serve telemetry`` on a free port and a fresh data directory, as
   ``bookline up`` would, with a policy file that keeps every trace (so the figure is not flattered
   by deleting what was dropped; the sampler still buffers every span and decides every trace). N
   exporter processes each send OTLP/HTTP protobuf exports of booking-like traces
   (``--spans-per-request`` spans, 16 per trace, ten attributes each) as fast as the store
   acknowledges them, for ``--seconds``; prints the spans per second acknowledged (200, nothing
   rejected) and the store's CPU time per span (which the machine's other work changes less).
2. lookup: fills a second data directory with ``--fill-spans`` spans of the same shape through the
   store's own storage module (the ingest path would take minutes to get there), starts the store
   on it, and times ``GET /api/traces/{id}`` for ``--lookups`` random stored traces (p50/p95/p99),
   then a few searches.

An exporter builds its export once and, for each request, swaps fresh random trace ids into the
serialized bytes: the exporters share the two CPUs with the store and must cost it little.

    python bench/telemetry.py [--exporters 4] [--seconds 20] [--fill-spans 1000000] [--lookups 500]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

KEEP_EVERYTHING = """\
decision_wait: 10s
num_traces: 100000
policies:
  - name: keep-everything
    type: always_sample
"""
# the first half of every trace id in the template; replaced by random bytes in each request
NONCE = b"\xde\xad\xbe\xef\xfe\xed\xfa\xce"
SPANS_PER_TRACE = 16
STEPS = [
    ("booking-service", "POST /bookings", Span.SPAN_KIND_SERVER),
    ("booking-service", "booking.create", Span.SPAN_KIND_INTERNAL),
    ("booking-service", "booking.check_availability", Span.SPAN_KIND_INTERNAL),
    ("booking-service", "GET", Span.SPAN_KIND_CLIENT),
    ("availability-service", "GET /availability", Span.SPAN_KIND_SERVER),
    ("booking-service", "booking.price_quote", Span.SPAN_KIND_INTERNAL),
    ("pricing-engine", "POST /quotes", Span.SPAN_KIND_SERVER),
    ("booking-service", "booking.acquire_lock", Span.SPAN_KIND_INTERNAL),
    ("availability-service", "POST /holds", Span.SPAN_KIND_SERVER),
    ("booking-service", "booking.process_payment", Span.SPAN_KIND_CLIENT),
    ("payment-gateway", "POST /v1/authorizations", Span.SPAN_KIND_SERVER),
    ("booking-service", "booking.confirm", Span.SPAN_KIND_INTERNAL),
    ("confirmation-service", "POST /bookings", Span.SPAN_KIND_SERVER),
    ("confirmation-service", "booking.confirmed publish", Span.SPAN_KIND_PRODUCER),
    ("notification-service", "booking.confirmed process", Span.SPAN_KIND_CONSUMER),
    ("notification-service", "notification.send_email", Span.SPAN_KIND_CLIENT),
]


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def template_request(spans: int, seed: int) -> bytes:
    """An export of ``spans`` spans (whole booking traces) whose trace ids all start with NONCE."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    by_service = {}
    now = time.time_ns()
    for t in range(spans // SPANS_PER_TRACE):
        trace_id = NONCE + t.to_bytes(8, "big")
        span_ids = [rng.randbytes(8) for _ in STEPS]
        start = now - rng.randrange(60_000_000_000)
        for i, (service, name, kind) in enumerate(STEPS):
            if service not in by_service:
                rs = request.resource_spans.add()
                rs.resource.attributes.extend(
                    [
                        _kv("service.name", service),
                        _kv("service.namespace", "bookline"),
                        _kv("service.instance.id", f"bench-{seed}-{service}"),
                        _kv("service.version", "0.1.0"),
                    ]
                )
                ss = rs.scope_spans.add()
                ss.scope.name = "bookline"
                by_service[service] = ss
            parent = b"" if i == 0 else span_ids[0 if i == 1 else 1 if i in (2, 5, 7, 9, 11) else i - 1]
            span = by_service[service].spans.add(
                trace_id=trace_id,
                span_id=span_ids[i],
                parent_span_id=parent,
                name=name,
                kind=kind,
                start_time_unix_nano=start + i * 1_000_000,
                end_time_unix_nano=start + i * 1_000_000 + 800_000,
                status=Status(code=Status.STATUS_CODE_OK if i == 1 else Status.STATUS_CODE_UNSET),
            )
            span.attributes.extend(
                [
                    _kv("booking.reservation_id", f"res_{rng.randrange(10**12):012d}"),
                    _kv("booking.user_id", f"guest-{rng.randrange(10**6)}"),
                    _kv("booking.source", rng.choice(["web", "mobile", "api"])),
                    _kv("booking.property_id", f"prop-{rng.randrange(1, 5000):05d}"),
                    _kv("booking.nights", rng.randrange(1, 14)),
                    _kv("booking.outcome", "confirmed"),
                    _kv("http.request.method", "POST"),
                    _kv("http.response.status_code", 201),
                    _kv("server.address", "127.0.0.1"),
                    _kv("booking.lock_acquired", True),
                ]
            )
    return request.SerializeToString()


def exporter(url: str, spans: int, seed: int, ready: Any, go: Any, stop_at: Any, counts: Any) -> None:
    """Build the export, wait for the start, send exports until ``stop_at`` (monotonic); report the
    spans acknowledged and the CPU seconds this exporter used while sending."""
    body = template_request(spans, seed)
    per_request = (spans // SPANS_PER_TRACE) * SPANS_PER_TRACE
    acked = 0
    headers = {"content-type": "application/x-protobuf", "authorization": f"Bearer {INGEST_TOKEN}"}
    with httpx.Client(timeout=60, headers=headers) as http:
        ready.put(seed)
        go.wait()
        cpu = time.process_time()
        while time.monotonic() < stop_at.value:
            answer = http.post(f"{url}/v1/traces", content=body.replace(NONCE, os.urandom(8)))
            if answer.status_code != 200:
                raise SystemExit(f"the store answered {answer.status_code}: {answer.text[:200]}")
            response = ExportTraceServiceResponse.FromString(answer.content)
            acked += per_request - response.partial_success.rejected_spans
    counts.put((acked, time.process_time() - cpu))


def run_exporters(url: str, n: int, seconds: float, spans: int) -> tuple[int, float, float]:
    """Spans acknowledged by the store, the seconds it took, and the exporters' CPU seconds. The
    clock starts once every exporter process is up and has built its export."""
    ctx = mp.get_context("spawn")
    ready, counts, go, stop_at = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    procs = [ctx.Process(target=exporter, args=(url, spans, 1000 + i, ready, go, stop_at, counts)) for i in range(n)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    started = time.monotonic()
    stop_at.value = started + seconds
    go.set()
    results = [counts.get() for _ in procs]
    elapsed = time.monotonic() - started
    for p in procs:
        p.join()
    return sum(a for a, _ in results), elapsed, sum(c for _, c in results)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


INGEST_TOKEN = "bench-ingest-token"


def start_store(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    policy = data_dir / "keep-everything.yaml"
    policy.write_text(KEEP_EVERYTHING)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKLINE_", "OTEL_"))}
    env.update(
        BOOKLINE_TELEMETRY_PORT=str(port),
        BOOKLINE_SAMPLING_POLICY_FILE=str(policy),
        BOOKLINE_TELEMETRY_MAX_SPANS=str(50_000_000),  # retention must not delete during the run
        # the exporters present it, as a Collector does (the store takes no anonymous export)
        BOOKLINE_TELEMETRY_INGEST_TOKEN=INGEST_TOKEN,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bookline", "serve", "telemetry", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the telemetry store did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by a process and its children."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def fill(data_dir: Path, spans: int) -> list[str]:
    """Write ``spans`` spans of booking-like traces (kept) straight into a store's database, as the
    store's writer would; returns the trace ids. Timestamps spread over the last hour."""
    from bookline.services.telemetry.decoding import TraceDelta, compact
    from bookline.services.telemetry.storage import KEPT, ResourceIds, Transaction, connect_writer, insert_spans

    rng = random.Random(11)
    conn = connect_writer(data_dir / "telemetry.db")
    conn.execute("PRAGMA synchronous = OFF")  # only this fill: nothing acknowledged depends on it
    services = sorted({service for service, _, _ in STEPS})
    resource_ids = ResourceIds().resolve(conn, [compact({"service.name": service}) for service in services])
    position = {service: i for i, service in enumerate(services)}
    now = time.time_ns()
    trace_ids = []
    per_batch = 512 // SPANS_PER_TRACE
    for _ in range(spans // SPANS_PER_TRACE // per_batch):
        rows, traces = [], {}
        for _ in range(per_batch):
            trace_id = rng.randbytes(16).hex()
            trace_ids.append(trace_id)
            span_ids = [rng.randbytes(8).hex() for _ in STEPS]
            start = now - rng.randrange(3_600_000_000_000)
            outcome = "confirmed" if rng.random() < 0.9 else "declined"
            # one attribute set per trace: building a fresh one for every span would make the fill
            # take minutes, and a lookup reads the same bytes either way
            attrs = compact(
                {
                    "booking.reservation_id": f"res_{rng.randrange(10**12):012d}",
                    "booking.user_id": f"guest-{rng.randrange(10**6)}",
                    "booking.source": rng.choice(["web", "mobile", "api"]),
                    "booking.property_id": f"prop-{rng.randrange(1, 5000):05d}",
                    "booking.nights": rng.randrange(1, 14),
                    "booking.outcome": outcome,
                    "http.request.method": "POST",
                    "http.response.status_code": 201 if outcome == "confirmed" else 402,
                    "server.address": "127.0.0.1",
                    "booking.lock_acquired": True,
                }
            )
            for i, (service, name, kind) in enumerate(STEPS):
                parent = None if i == 0 else span_ids[0 if i == 1 else 1 if i in (2, 5, 7, 9, 11) else i - 1]
                error = 2 if outcome == "declined" and i == 1 else 0
                t0 = start + i * 1_000_000
                rows.append(
                    (
                        trace_id,
                        span_ids[i],
                        parent,
                        service,
                        name,
                        kind,
                        t0,
                        t0 + 800_000,
                        error,
                        None,
                        attrs,
                        None,
                        None,
                        position[service],
                        "bookline",
                    )
                )
            end = start + len(STEPS) * 1_000_000
            traces[trace_id] = TraceDelta(
                start, end, len(STEPS), outcome != "confirmed", STEPS[0][0], STEPS[0][1], outcome
            )
        with Transaction(conn):
            insert_spans(conn, rows, traces, resource_ids, dict.fromkeys(traces, KEPT), 0.0)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return trace_ids


def quantiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {cuts[49]:.1f} ms, p95 {cuts[94]:.1f} ms, p99 {cuts[98]:.1f} ms"


def timed(http: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    answer = http.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
    return elapsed


def measure_ingest(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bookline-bench-telemetry-"))
    proc, url = start_store(data_dir)
    try:
        cpu_before = cpu_seconds(proc.pid)
        acked, elapsed, exporters_cpu = run_exporters(url, args.exporters, args.seconds, args.spans_per_request)
        cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        stop_store(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
    print(
        f"ingest: {acked:,} spans acknowledged in {elapsed:.1f} s by {args.exporters} exporters "
        f"({args.spans_per_request} spans per request): {acked / elapsed:,.0f} spans/s"
    )
    # the machine's other work changes the rate; it changes the store's own CPU per span less
    print(
        f"ingest: the store used {cpu / elapsed:.0%} of a core, {cpu / max(acked, 1) * 1e6:.1f} CPU µs per span; "
        f"the exporters {exporters_cpu / elapsed:.0%} of a core"
    )


def measure_lookups(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bookline-bench-telemetry-"))
    proc = None
    try:
        started = time.monotonic()
        trace_ids = fill(data_dir, args.fill_spans)
        held = len(trace_ids) * SPANS_PER_TRACE
        print(f"filled: {held:,} spans in {len(trace_ids):,} traces in {time.monotonic() - started:.0f} s")
        proc, url = start_store(data_dir)
        with httpx.Client(base_url=url, timeout=30) as http:
            wanted = random.Random(7).choices(trace_ids, k=args.lookups)
            for trace_id in wanted[:20]:  # warm the connection and the page cache a little
                timed(http, f"/api/traces/{trace_id}")
            lookups = [timed(http, f"/api/traces/{trace_id}") for trace_id in wanted]
            print(f"lookup: GET /api/traces/{{id}} x{len(lookups)} with {held:,} spans stored: {quantiles(lookups)}")
            for path in (
                "/api/traces?limit=20",
                "/api/traces?service=payment-gateway&limit=20",
                "/api/traces?name=notification.send_email&limit=20",
                "/api/traces?attr.booking.source=mobile&limit=20",
                "/api/traces?status=error&limit=20",
                "/api/traces?outcome=declined&min_duration_ms=10&limit=20",
                # rare matches: every trace is asked before the answer is known to be short
                "/api/traces?name=payment.refund&limit=20",
                "/api/traces?attr.booking.property_id=prop-00042&limit=20",
                "/api/services",
                f"/api/dependencies?since={int(time.time() * 1000) - 60_000}",
            ):
                runs = [timed(http, path) for _ in range(5)]
                print(f"search: GET {path}: median {statistics.median(runs):.1f} ms")
        size = sum(f.stat().st_size for f in data_dir.iterdir() if f.name.startswith("telemetry.db"))
        print(f"disk: {size / 1e6:,.0f} MB for {held:,} spans")
    finally:
        if proc is not None:
            stop_store(proc)
        if args.keep:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exporters", type=int, default=4, help="concurrent exporter processes")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the ingest measurement (0: skip)")
    parser.add_argument("--spans-per-request", type=int, default=512)
    parser.add_argument("--fill-spans", type=int, default=1_000_000, help="spans stored for the lookups (0: skip)")
    parser.add_argument("--lookups", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the lookup data directory (its path is printed)")
    args = parser.parse_args()
    if args.seconds > 0:
        measure_ingest(args)
    if args.fill_spans > 0:
        measure_lookups(args)


def stop_store(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


if __name__ == "__main__":
    main()
