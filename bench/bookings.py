"""Booking throughput and latency, with tracing exported and with tracing off, in one run.

Each mode is a ``bookline up`` on a fresh data directory and free ports, seeded, with the cards
tokenized up front (as browsers would, outside the measured window). The benchmark starts every
mode's stack, warms each up, then books distinct rooms at a fixed concurrency through the public API
in rounds that take turns between the modes, so that a shared machine slowing down for a while slows
every mode alike. Four modes: ``on``, every service exports OTLP/HTTP (spans, metrics, logs) to a
local sink that accepts and discards them (the cost of tracing itself); ``store``, ``bookline up`` as
it comes, exporting to its own telemetry store, which shares the two CPUs (what a user of ``make run``
gets); ``off``, ``OTEL_SDK_DISABLED=true``; and ``stock``, exporting to the sink like ``on`` but with
the OpenTelemetry set-up a team would write from the docs (``BOOKLINE_TELEMETRY_SETUP=stock``: the
contrib instrumentations with their defaults, a span per SQL statement, every HTTP instrument, the
batch processor's defaults), so that Bookline's tracing cost is measured beside stock's in one run.

The bookings are dealt over a pool of customers (one per 20 bookings, as ``bookline load`` does), each
with a bearer token minted up front with the stack's local issuer (its key is in the data directory
``bookline up`` provisions); booking-service verifies a token on its first booking, inside the
measured window, as it would a customer's. The stacks' booking rate limits are raised out of the way
(``RATE_LIMITS``): every booking comes from one address, and the benchmark measures bookings, not limits.

With ``--backend postgres-nats`` every stack runs on PostgreSQL (127.0.0.1:5432, a schema prefix of
its own, dropped afterwards) and NATS JetStream (127.0.0.1:4222), ``--replicas N`` processes of each
service; the CPU of the PostgreSQL and NATS servers and PostgreSQL's transactions are counted too.

    python bench/bookings.py [--bookings 2000] [--rounds 4] [--concurrency 32] [--warmup 100]
                             [--modes on,store,off,stock] [--backend sqlite|postgres-nats] [--replicas N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bookline.auth.customers import LocalIssuer
from bookline.config import SERVICES, TELEMETRY_STORE, Settings
from bookline.load.customers import Customers, pool_size
from bookline.load.guests import guest_of

ROOMS_PER_PROPERTY = 20
BACKENDS = {"sqlite": "SQLite and the embedded queue", "postgres-nats": "PostgreSQL and NATS JetStream"}
PG_URL = os.environ.get("BOOKLINE_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("BOOKLINE_BENCH_NATS_URL", "nats://127.0.0.1:4222")
PG_CONNECTIONS = 80  # of the server's max_connections (100 by default), what the stacks may use together
# every booking comes from one address, and a customer books many times a minute here: no limit must bind
RATE_LIMITS = {
    "BOOKLINE_RATE_LIMIT_BOOKINGS_PER_CUSTOMER": "1000000/minute",
    "BOOKLINE_RATE_LIMIT_BOOKINGS_PER_ADDRESS": "1000000/minute",
}


class _Sink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports: an empty protobuf body is a valid Export*ServiceResponse."""

    received: Counter = Counter()  # bytes, by (mode, signal path)
    spans: Counter = Counter()  # by mode

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        # each mode exports to <endpoint>/<mode>, and the exporter adds /v1/traces, /v1/metrics, /v1/logs
        _, mode, signal_path = self.path.split("/", 2)
        _Sink.received[mode, "/" + signal_path] += length
        if signal_path == "v1/traces":
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            _Sink.spans[mode] += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_stack(data_dir: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKLINE_", "OTEL_"))}
    urls = {}
    for spec in SERVICES:
        port = free_port()
        env[f"BOOKLINE_{spec.key.upper()}_PORT"] = str(port)
        urls[spec.name] = f"http://127.0.0.1:{port}"
    # started only when no OTLP endpoint is set and telemetry is on; `bookline up` waits for it
    env[f"BOOKLINE_{TELEMETRY_STORE.key.upper()}_PORT"] = str(free_port())
    env.update(RATE_LIMITS)
    env.update(extra_env)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bookline",
            "seed",
            "--data-dir",
            str(data_dir),
            "--properties",
            str(args.properties),
            "--rooms-per-property",
            str(ROOMS_PER_PROPERTY),
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bookline", "up", "--data-dir", str(data_dir), "--replicas", str(args.replicas)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    for url in urls.values():
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit(f"the stack did not start ({url})")
            time.sleep(0.2)
    return proc, urls


def stop_stack(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def drive(
    urls: dict[str, str], total: int, concurrency: int, first_room: int, customers: Customers
) -> tuple[list[float], Counter, float]:
    """Book ``total`` distinct rooms for one night each, as the customers of the pool in turn; returns
    the latencies (s), the answers by code and the wall time of the booking phase (the cards are
    tokenized before it starts).
    The driver uses aiohttp: it shares the two CPUs with the services and must cost them little."""
    check_in = datetime.now(UTC).date() + timedelta(days=30)
    check_out = check_in + timedelta(days=1)
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=2.0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        tokens = []
        for _ in range(total):
            async with http.post(
                f"{urls['payment-gateway']}/v1/tokens",
                json={
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": check_in.year + 3,
                    "cvc": "123",
                },
            ) as r:
                tokens.append((await r.json())["token"])
        # the guests search first (not timed): each booking then names its room and the quote the
        # availability answer gave for it, and is charged exactly that
        quotes: dict[str, str] = {}
        for prop in sorted({(first_room + i) // ROOMS_PER_PROPERTY + 1 for i in range(total)}):
            params = {"property_id": f"prop-{prop:05d}", "check_in": check_in.isoformat(),
                      "check_out": check_out.isoformat(), "guests": 1}  # fmt: skip
            async with http.get(f"{urls['booking-service']}/availability", params=params) as r:
                quotes |= {room["room_id"]: room["quote_id"] for room in (await r.json())["rooms"]}
        pending = list(range(total))
        latencies: list[float] = []
        outcomes: Counter = Counter()

        async def worker() -> None:
            while pending:
                i = pending.pop()
                room = first_room + i
                prop = room // ROOMS_PER_PROPERTY + 1
                room_id = f"prop-{prop:05d}-r{room % ROOMS_PER_PROPERTY + 1:03d}"
                customer = customers.next()
                body = {
                    "source": "api",
                    "property_id": f"prop-{prop:05d}",
                    "room_id": room_id,
                    "check_in": check_in.isoformat(),
                    "check_out": check_out.isoformat(),
                    "guests": 1,
                    "guest": guest_of(customer),
                    "payment": {"method": "card", "token": tokens[i], "card_last_four": "4242"},
                }
                if room_id in quotes:
                    body["quote_id"] = quotes[room_id]
                headers = {"Idempotency-Key": str(uuid.uuid4()), **customers.auth(customer)}
                started = time.perf_counter()
                async with http.post(f"{urls['booking-service']}/bookings", json=body, headers=headers) as r:
                    answer = await r.json()
                    status = r.status
                latencies.append(time.perf_counter() - started)
                outcomes[status if status == 201 else answer["error"]["code"]] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, outcomes, time.perf_counter() - started


# servers a postgres-nats stack shares, by the name of their processes (their CPU counts as a tier)
SERVERS = {"postgres": "postgres", "nats-server": "nats"}


def service_cpu_seconds(supervisor_pid: int) -> dict[str, float]:
    """CPU time (user + system) used so far by each service of a ``bookline up`` (its replicas and
    their own child processes, such as the telemetry store's decoding worker, added up), by ``bookline
    up`` itself (it relays every line the services log), and by the PostgreSQL and NATS servers."""
    ticks = os.sysconf("SC_CLK_TCK")
    processes: dict[int, tuple[int, str, float]] = {}  # pid: (parent, comm, cpu)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
            fields = tail.split()
            processes[int(stat.parent.name)] = (
                int(fields[1]),
                head.split("(", 1)[1],
                (int(fields[11]) + int(fields[12])) / ticks,
            )
        except (OSError, IndexError, ValueError):
            continue
    found: Counter = Counter()
    for pid, (parent, comm, cpu) in processes.items():
        if pid == supervisor_pid:
            found["up"] += cpu
            continue
        if args.backend != "sqlite" and comm in SERVERS:
            found[SERVERS[comm]] += cpu
            continue
        service = pid
        while parent not in (supervisor_pid, 0, 1) and parent in processes:  # up to the service process
            service, parent = parent, processes[parent][0]
        if parent != supervisor_pid:
            continue
        try:
            cmdline = Path(f"/proc/{service}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found[cmdline[cmdline.index(b"serve") + 1].decode() if b"serve" in cmdline else "?"] += cpu
    return dict(found)


def pg_transactions() -> int:
    """Transactions committed so far in the benchmark's PostgreSQL database (every stack's)."""
    import asyncpg

    async def read() -> int:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            return int(
                await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
            )
        finally:
            await conn.close()

    return asyncio.run(read())


def drop_schemas(prefix: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            names = await conn.fetch(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE $1", prefix + "%"
            )
            for row in names:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{row["schema_name"]}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def mint_customers(data_dir: Path, bookings: int) -> Customers:
    """The pool of customers of a stack, every token minted now (signing is the driver's CPU, which
    it shares with the services: not inside the measured window)."""
    issuer = LocalIssuer(Settings(data_dir=data_dir, keys_dir=data_dir / "keys"))
    customers = Customers(issuer.mint, pool_size(bookings), prefix="bench")
    for customer in customers.ids:
        customers.auth(customer)
    return customers


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


class Mode:
    """One stack under test: started on its own data directory, then driven round after round."""

    def __init__(self, key: str, name: str, env: dict[str, str]) -> None:
        self.key, self.name = key, name
        self.prefix = f"bench{uuid.uuid4().hex[:8]}_"
        if args.backend == "postgres-nats":
            # a schema prefix and a queue of the stack's own: the modes share the servers, nothing else
            # every process of every mode's stack has a pool: together they stay under the server's 100
            per_process = max(2, PG_CONNECTIONS // (len(args.modes) * len(SERVICES) * args.replicas))
            env = {**env, "BOOKLINE_DATABASE_URL": PG_URL, "BOOKLINE_DB_SCHEMA_PREFIX": self.prefix,
                   "BOOKLINE_QUEUE_URL": NATS_URL, "BOOKLINE_QUEUE_STREAM_PREFIX": self.prefix,
                   "BOOKLINE_DB_POOL_SIZE": str(per_process - per_process // 3),
                   "BOOKLINE_DB_MAX_OVERFLOW": str(per_process // 3)}  # fmt: skip
        self.env = env
        self.tmp = tempfile.TemporaryDirectory(prefix=f"bookline-bench-{key}-")
        self.proc, self.urls = start_stack(Path(self.tmp.name), env)
        self.customers = mint_customers(Path(self.tmp.name), args.warmup + args.bookings)
        self.next_room = 0
        self.latencies: list[float] = []
        self.outcomes: Counter = Counter()
        self.wall_s = 0.0
        self.cpu_s: Counter = Counter()
        self.transactions = 0

    def drive(self, bookings: int, *, measured: bool = True) -> None:
        cpu_before = service_cpu_seconds(self.proc.pid)
        transactions_before = pg_transactions() if args.backend == "postgres-nats" else 0
        latencies, outcomes, elapsed = asyncio.run(
            drive(self.urls, bookings, args.concurrency, self.next_room, self.customers)
        )
        self.next_room += bookings
        # the confirmation e-mails and the outbox drain after the last answer: let them finish here,
        # not in the next mode's round (nothing is measured meanwhile, the CPU they take is counted)
        time.sleep(1.0)
        cpu_after = service_cpu_seconds(self.proc.pid)
        transactions = pg_transactions() - transactions_before if args.backend == "postgres-nats" else 0
        if not measured:
            return
        self.transactions += transactions
        self.latencies += latencies
        self.outcomes += outcomes
        self.wall_s += elapsed
        for name, seconds in cpu_after.items():
            self.cpu_s[name] += seconds - cpu_before.get(name, 0.0)

    def stop(self) -> None:
        stop_stack(self.proc)
        self.tmp.cleanup()
        if args.backend == "postgres-nats":
            drop_schemas(self.prefix)

    def result(self) -> dict:
        booked = sum(self.outcomes.values())
        return {
            "mode": self.name,
            "confirmed": self.outcomes[201],
            "outcomes": dict(self.outcomes),
            "per_s": self.outcomes[201] / self.wall_s,
            "wall_s": self.wall_s,
            # CPU milliseconds each process spent per booking (tokenization included, it is small)
            "cpu_ms": {k: v * 1000 / booked for k, v in self.cpu_s.items()},
            "transactions": self.transactions / booked,
            "p50": percentile(self.latencies, 50) * 1000,
            "p95": percentile(self.latencies, 95) * 1000,
            "p99": percentile(self.latencies, 99) * 1000,
        }


def run_modes(envs: dict[str, tuple[str, dict[str, str]]]) -> dict[str, dict]:
    """Start every mode's stack, then book in rounds that take turns between the modes: a machine
    that slows down for a while (it is shared) slows every mode, not the one that ran then."""
    modes = []
    try:
        for key in args.modes:
            modes.append(Mode(key, *envs[key]))
        for mode in modes:
            mode.drive(args.warmup, measured=False)
        per_round = [args.bookings // args.rounds + (i < args.bookings % args.rounds) for i in range(args.rounds)]
        for bookings in per_round:
            for mode in modes:
                mode.drive(bookings)
        return {mode.key: mode.result() for mode in modes}
    finally:
        for mode in modes:
            mode.stop()


def main() -> None:
    sink = ThreadingHTTPServer(("127.0.0.1", free_port()), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}"
    envs = {
        "on": (
            "tracing on (OTLP export)",
            {"OTEL_EXPORTER_OTLP_ENDPOINT": f"{endpoint}/on", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
        ),
        "store": ("tracing to the local store", {}),
        "off": ("tracing off", {"OTEL_SDK_DISABLED": "true"}),
        "stock": (
            "stock OpenTelemetry (OTLP)",
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"{endpoint}/stock",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "BOOKLINE_TELEMETRY_SETUP": "stock",
            },
        ),
    }
    results = run_modes(envs)
    sink.shutdown()
    modes = tuple(results.values())
    print(
        f"\n{args.bookings} bookings per mode over distinct rooms, concurrency {args.concurrency}, "
        f"{args.rounds} rounds taking turns between the modes, {os.cpu_count()} CPUs, {BACKENDS[args.backend]}, "
        f"{args.replicas} replica(s) of each service\n"
    )
    print(f"{'mode':28} {'confirmed':>9} {'bookings/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for r in modes:
        print(
            f"{r['mode']:28} {r['confirmed']:>9} {r['per_s']:>10.1f} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f}"
        )
        if set(r["outcomes"]) != {201}:
            print(f"  other answers: {r['outcomes']}")
    print("\nCPU ms per booking, by process (up: bookline up itself):")
    names = sorted({n for r in modes for n in r["cpu_ms"]})
    print(f"{'mode':28} " + " ".join(f"{n.split('-')[0][:12]:>12}" for n in names) + f" {'total':>8}")
    for r in modes:
        print(
            f"{r['mode']:28} "
            + " ".join(f"{r['cpu_ms'].get(n, 0):>12.1f}" for n in names)
            + f" {sum(r['cpu_ms'].values()):>8.1f}"
        )
    off = results.get("off")
    for key, label in (
        ("on", "exported over OTLP"),
        ("store", "to the local store"),
        ("stock", "with the stock OpenTelemetry set-up (OTLP)"),
    ):
        if off is not None and key in results:
            cost = (off["per_s"] - results[key]["per_s"]) / off["per_s"] * 100
            print(f"\ntracing {label} costs {cost:.1f}% of throughput", end="")
    for key in ("on", "stock"):
        if key in results:
            signals = {path: size for (mode, path), size in _Sink.received.items() if mode == key}
            print(f"\nthe sink received {sum(signals.values()) / 1e6:.1f} MB of OTLP from {key} ({signals})", end="")
    print()
    exported = args.warmup + args.bookings
    for key in ("on", "stock"):
        if key in results:
            print(
                f"per booking exported over OTLP by {results[key]['mode']}: {_Sink.spans[key] / exported:.1f} spans, "
                f"{_Sink.received[key, '/v1/traces'] / exported / 1000:.1f} kB of traces (warm-up included)"
            )
    if args.backend == "postgres-nats":
        print("PostgreSQL transactions committed per booking (every stack's, while each one booked):")
        for r in modes:
            print(f"  {r['mode']:28} {r['transactions']:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="rounds per mode, taking turns between modes")
    parser.add_argument("--properties", type=int, default=150)
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="sqlite")
    parser.add_argument("--replicas", type=int, default=1, help="processes of each service (postgres-nats only)")
    parser.add_argument(
        "--modes",
        type=lambda v: v.split(","),
        default=["on", "store", "off", "stock"],
        help="which of on,store,off,stock to run, in that order (default: on,store,off,stock)",
    )
    args = parser.parse_args()
    if not set(args.modes) <= {"on", "store", "off", "stock"}:
        parser.error("--modes takes on, store, off and stock")
    if not 1 <= args.rounds <= args.bookings:
        parser.error("--rounds must be between 1 and --bookings")
    if args.replicas != 1 and args.backend == "sqlite":
        parser.error("--replicas needs --backend postgres-nats")
    if (args.bookings + args.warmup) > args.properties * ROOMS_PER_PROPERTY:
        parser.error("more bookings than rooms: raise --properties")
    main()
