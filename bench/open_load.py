"""Booking latency under an open-model load: ``bookline load --rate R --mix book=100`` against the stack
``make run`` starts (``bookline seed`` then ``bookline up``, its own telemetry store included), with
tracing as it comes and with tracing off, one mode after the other on fresh data directories and free
ports. Prints each mode's p50/p95/p99 of a booking and its outcomes.

Every arrival comes from this machine's one address, so the stacks' booking rate limits are raised out
of the way; the run measures latency, not limits.

    python bench/open_load.py [--rate 40] [--duration 60] [--modes store,off] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bookline.config import SERVICES, TELEMETRY_STORE

RATE_LIMITS = {
    "BOOKLINE_RATE_LIMIT_BOOKINGS_PER_CUSTOMER": "1000000/minute",
    "BOOKLINE_RATE_LIMIT_BOOKINGS_PER_ADDRESS": "1000000/minute",
}
MODES = {"store": ("tracing to the local store (make run)", {}), "off": ("tracing off", {"OTEL_SDK_DISABLED": "true"})}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bookline(*argv: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bookline", *argv], env=env, check=True, **kwargs)


def run_mode(key: str, extra: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bookline-open-{key}-") as tmp:
        data = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKLINE_", "OTEL_"))}
        urls = {}
        for spec in (*SERVICES, TELEMETRY_STORE):
            port = free_port()
            env[f"BOOKLINE_{spec.key.upper()}_PORT"] = str(port)
            urls[spec.name] = f"http://127.0.0.1:{port}"
        env |= RATE_LIMITS | extra | {"BOOKLINE_DATA_DIR": str(data)}
        bookline("seed", env=env, stdout=subprocess.DEVNULL)
        up = subprocess.Popen(
            [sys.executable, "-m", "bookline", "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 90
            for spec in SERVICES:
                while True:
                    try:
                        if httpx.get(f"{urls[spec.name]}/readyz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or up.poll() is not None:
                        raise SystemExit(f"the {key} stack did not start")
                    time.sleep(0.2)
            load = ["load", "--mix", "book=100", "--url", urls["booking-service"]]
            load += ["--gateway-url", urls["payment-gateway"], "--data-dir", str(data)]
            if args.warmup:
                bookline(*load, "--rate", str(args.rate), "--duration", f"{args.warmup}s", env=env,
                         stdout=subprocess.DEVNULL)  # fmt: skip
            summary = data / "load.json"
            bookline(*load, "--rate", str(args.rate), "--duration", f"{args.duration}s", "--json", str(summary),
                     env=env, stdout=subprocess.DEVNULL)  # fmt: skip
            return json.loads(summary.read_text())["operations"]["book"]
        finally:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=15)
            except subprocess.TimeoutExpired:
                up.kill()


def main() -> None:
    results = {key: run_mode(key, MODES[key][1]) for key in args.modes}
    print(f"\nbookline load --rate {args.rate} --duration {args.duration}s --mix book=100, {os.cpu_count()} CPUs\n")
    print(f"{'mode':40} {'bookings':>8} {'per s':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for key, book in results.items():
        latency = book["latency_ms"]
        print(
            f"{MODES[key][0]:40} {book['count']:>8} {book['rate_per_s']:>6.1f} {latency['p50']:>8.1f} "
            f"{latency['p95']:>8.1f} {latency['p99']:>8.1f} {latency['max']:>8.1f}"
        )
        print(f"  outcomes: {book['outcomes']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--duration", type=int, default=60, help="seconds of measured arrivals")
    parser.add_argument("--warmup", type=int, default=10, help="seconds of arrivals before, not measured")
    parser.add_argument("--modes", type=lambda v: v.split(","), default=["store", "off"])
    args = parser.parse_args()
    if not set(args.modes) <= set(MODES):
        parser.error(f"--modes takes {', '.join(MODES)}")
    main()
