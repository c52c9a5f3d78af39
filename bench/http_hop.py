"""The floor under every booking: the CPU one HTTP hop costs a Bookline service, with and without tracing.

A booking crosses seven HTTP hops between the services; this measures one of them in isolation. It
serves a FastAPI app built by Bookline's own ``create_service_app`` (the same middleware, error
envelope and instrumentation as every service) with one endpoint that echoes a small JSON body, in a
process of its own, drives it with aiohttp from this process, and prints the server's CPU time per
request, with Bookline's tracing and with the stock OpenTelemetry set-up, both exported over OTLP/HTTP
(to the same discarding sink as ``bookings.py``), and with the SDK disabled.

    python bench/http_hop.py [--requests 5000] [--concurrency 16] [--modes on,stock,off]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import ThreadingHTTPServer

import aiohttp
from bookings import _Sink

SERVER = textwrap.dedent(
    """
    import sys, uvicorn
    from fastapi import Body
    from bookline.config import Settings
    from bookline.services.common.app import create_service_app
    from bookline.telemetry import setup_telemetry

    settings = Settings()
    telemetry = setup_telemetry("hop-bench", settings, install_global=True)
    app = create_service_app(title="hop", telemetry=telemetry, db=None, max_body_bytes=settings.max_body_bytes)

    @app.post("/echo")
    async def echo(body: dict = Body(...)) -> dict:
        return {"ok": True, **body}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None, access_log=False)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(url: str, total: int, concurrency: int) -> float:
    body = {"reservation_id": "res_0123456789abcdef", "room_id": "prop-00001-r001", "nights": 2}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        remaining = [total]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                async with http.post(url, json=body) as r:
                    await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def run(mode: str, sink: str) -> tuple[float, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKLINE_", "OTEL_"))}
    if mode == "off":
        env["OTEL_SDK_DISABLED"] = "true"
    else:  # the sink counts each mode's exports under /<mode>
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"{sink}/{mode}"
        if mode == "stock":
            env["BOOKLINE_TELEMETRY_SETUP"] = "stock"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}/echo"
        for _ in range(200):
            try:
                asyncio.run(drive(url, 1, 1))
                break
            except aiohttp.ClientError:
                time.sleep(0.05)
        asyncio.run(drive(url, 500, args.concurrency))  # warm-up
        before = cpu_seconds(proc.pid)
        wall = asyncio.run(drive(url, args.requests, args.concurrency))
        used = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return used * 1000 / args.requests, args.requests / wall


def main() -> None:
    sink = ThreadingHTTPServer(("127.0.0.1", free_port()), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    print(f"{args.requests} POST requests with a small JSON body, concurrency {args.concurrency}")
    for mode in args.modes:
        cpu_ms, rate = run(mode, f"http://127.0.0.1:{sink.server_address[1]}")
        print(f"tracing {mode:5}: {cpu_ms:5.2f} ms server CPU per request, {rate:7.0f} requests/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--modes",
        type=lambda v: v.split(","),
        default=["on", "stock", "off"],
        help="on: Bookline's tracing; stock: the stock OpenTelemetry set-up (BOOKLINE_TELEMETRY_SETUP=stock); off",
    )
    args = parser.parse_args()
    main()
