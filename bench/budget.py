"""What each unit of a booking's telemetry costs, measured in this process: a span (made, redacted,
encoded for OTLP), a database transaction and its statements, a log line. Each is timed with Bookline's
set-up and with the stock one (``BOOKLINE_TELEMETRY_SETUP=stock``), and untraced where that means
something. ``bench/http_hop.py`` gives the cost of an HTTP hop and ``bench/bookings.py`` the cost of a
whole booking, by service (notification-service's is the cost of an e-mail); the README's budget table
multiplies these by what one booking makes.

    python bench/budget.py [--repeat 5] [--n 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as stock_encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from bookline.adapters.db import Database
from bookline.config import Settings
from bookline.otlp_encoding import encode_spans
from bookline.telemetry import RedactingSpanExporter, build_resource, setup_telemetry

# the attributes of a typical span of a booking (an HTTP server span: the most common kind)
ATTRIBUTES = {
    "http.request.method": "POST",
    "url.scheme": "http",
    "url.path": "/holds",
    "http.route": "/holds",
    "server.address": "127.0.0.1:8001",
    "server.port": 8001,
    "network.protocol.version": "1.1",
    "client.address": "127.0.0.1",
    "user_agent.original": "Python/3.11 aiohttp/3.14.5",
    "http.response.status_code": 201,
}


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list = []

    def export(self, spans) -> SpanExportResult:  # noqa: ANN001
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def best_us(fn: Callable[[], object], n: int) -> float:
    """The best of ``--repeat`` runs of ``fn`` n times, in µs per call (the machine is shared: the
    best run is the one least disturbed)."""
    times = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - started) / n * 1e6)
    return min(times)


def spans() -> dict[str, float]:
    keep = Keep()
    provider = TracerProvider(resource=build_resource("booking-service", Settings()))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("bookline")

    def one() -> None:
        with tracer.start_as_current_span("POST /holds", attributes=ATTRIBUTES):
            pass

    made = best_us(one, args.n)
    batch = keep.spans[:512]
    redacting = RedactingSpanExporter(Keep())
    return {
        "span made and ended (10 attributes)": made,
        "span redacted (the safety net)": best_us(lambda: redacting.export(batch), 20) / len(batch),
        "span encoded for OTLP, stock encoder": best_us(
            lambda: stock_encode_spans(batch).SerializePartialToString(), 20
        )
        / len(batch),
        "span encoded for OTLP, Bookline's": best_us(lambda: encode_spans(batch), 20) / len(batch),
    }


def transaction_us(tmp: Path, setup: str | None) -> float:
    """µs per read transaction of three statements on a SQLite file, traced by ``setup`` (or not)."""
    metadata = MetaData()
    rows = Table("rows", metadata, Column("id", Integer, primary_key=True), Column("value", String))
    db = Database(f"sqlite:///{tmp / f'{setup}.db'}")

    def create(conn) -> None:  # noqa: ANN001
        metadata.create_all(conn)
        conn.execute(insert(rows).values(id=1, value="a"))
        conn.commit()

    asyncio.run(db.run_sync(create))
    if setup is not None:
        settings = Settings(data_dir=tmp, telemetry_setup=setup)
        setup_telemetry("booking-service", settings, span_exporter=Keep(), export=False).instrument_database(db)

    async def three() -> None:  # reads: a write's commit waits for the disk, which is not the point
        async with db.read() as conn:
            await conn.execute(select(rows).where(rows.c.id == 1))
            await conn.execute(select(rows.c.value).where(rows.c.id == 1))
            await conn.execute(select(rows.c.value))

    loop = asyncio.new_event_loop()
    try:
        return best_us(lambda: loop.run_until_complete(three()), args.n // 4)
    finally:
        loop.close()
        asyncio.run(db.dispose())


def transactions(tmp: Path) -> dict[str, float]:
    setups = {"untraced": None, "Bookline (one span per transaction)": "bookline",
              "stock (one span per statement)": "stock"}  # fmt: skip
    return {f"transaction of 3 statements, {label}": transaction_us(tmp, setup) for label, setup in setups.items()}


def log_lines(tmp: Path) -> dict[str, float]:
    from bookline.telemetry import configure_logging

    results = {}
    log = logging.getLogger("bookline.budget")
    for label, provider in (("JSON on stderr", None), ("JSON on stderr and OTLP", "otlp")):
        logger_provider = None
        if provider:
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, InMemoryLogRecordExporter

            logger_provider = LoggerProvider()
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(InMemoryLogRecordExporter()))
        configure_logging("booking-service", logger_provider)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and not hasattr(handler, "_logger_provider"):
                handler.setStream(io.StringIO())
        results[f"log line at INFO, {label}"] = best_us(
            lambda: log.info("booking %s ended %s (%d)", "bk_0123456789abcdef01234567", "success", 201), args.n
        )
        if logger_provider is not None:
            logger_provider.shutdown()
    logging.getLogger().handlers.clear()
    return results


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bookline-budget-") as tmp:
        figures = spans() | transactions(Path(tmp)) | log_lines(Path(tmp))
    print(f"\nbest of {args.repeat} runs, µs per unit, in one process on a shared machine\n")
    width = max(map(len, figures))
    for name, us in figures.items():
        print(f"{name:{width}} {us:8.1f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--n", type=int, default=4000, help="spans and log lines per run (transactions: n/4)")
    args = parser.parse_args()
    main()
