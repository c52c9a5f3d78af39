"""The running telemetry store: the writer thread, the read-only connections, the tail sampling
and retention loops, and the calls the HTTP API makes.

Writes go through the one :class:`Writer` in submission order; reads run on a small pool of threads,
each with its own read-only connection, so a slow search never holds up ingestion.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bookline.config import Settings
from bookline.services.telemetry import retention
from bookline.services.telemetry.decode_pool import DecodePool
from bookline.services.telemetry.decoding import DecodedLogs, DecodedMetrics, DecodedSpans
from bookline.services.telemetry.retention import RetentionPolicy, RetentionReport
from bookline.services.telemetry.sampling import Decision, SamplingConfig
from bookline.services.telemetry.sampling_loop import DECIDED_CACHE_SIZE, TICK_S, TraceSampling, remembered_decisions
from bookline.services.telemetry.storage import (
    ResourceIds,
    SeriesIds,
    connect_reader,
    connect_writer,
    insert_logs,
    insert_metrics,
)
from bookline.services.telemetry.writer import Writer

log = logging.getLogger("bookline.telemetry.store")

# the writer thread takes the GIL back after every statement; with the event loop decoding, the
# default 5 ms switch interval kept it waiting for the GIL far longer than for SQLite (in
# bench/telemetry.py, ingest went from about 12,000 to 17,000-20,000 spans/s at 0.1 ms)
SWITCH_INTERVAL_S = 0.0001

T = TypeVar("T")


class TelemetryStore:
    """Everything the store's API needs, started and stopped with the app."""

    def __init__(
        self,
        path: Path,
        *,
        sampling: SamplingConfig,
        retention_policy: RetentionPolicy,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        tick_s: float = TICK_S,
        retention_interval_s: float = retention.INTERVAL_S,
        readers: int = 2,
        decode_workers: int | None = None,
        redact: bool = True,
    ) -> None:
        self.path = path
        self.sampling = TraceSampling(sampling, decided_cache_size=DECIDED_CACHE_SIZE)
        self.retention_policy = retention_policy
        self.clock = clock
        self.wall_ns = wall_ns
        self.tick_s = tick_s
        self.retention_interval_s = retention_interval_s
        self.writer = Writer(partial(connect_writer, path), on_rollback=self._forget_ids)
        # one decoding process beside this one, where there is a second core for it
        workers = decode_workers if decode_workers is not None else (1 if (os.cpu_count() or 1) > 1 else 0)
        # what any sender exports is redacted before it is stored (off only in a control test)
        self.decoder = DecodePool(workers, redact=redact)
        self._reader_count = readers
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._resources = ResourceIds()
        self._series = SeriesIds()
        self._tasks: list[asyncio.Task[None]] = []
        self._switch_interval = sys.getswitchinterval()

    @classmethod
    def from_settings(cls, settings: Settings) -> TelemetryStore:
        sampling = SamplingConfig.load(settings.sampling_policy_file)
        return cls(
            settings.telemetry_db_path,
            sampling=sampling,
            retention_policy=RetentionPolicy.from_limits(
                settings.telemetry_retention_hours, settings.telemetry_max_spans, remembered_decisions(sampling)
            ),
            decode_workers=settings.telemetry_decode_workers,
            redact=not settings.unsafe_disable_redaction,
        )

    # ---- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database, give the sampler back what it knew before a restart, start the loops."""
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        await asyncio.to_thread(self.writer.start)
        self._readers = ThreadPoolExecutor(self._reader_count, thread_name_prefix="telemetry-reader")
        restored = await self.writer.run(lambda conn: self.sampling.restore(conn, self.clock(), self.wall_ns() / 1e9))
        if restored:
            log.info("restored %d traces waiting for their sampling decision", restored)
        self._tasks = [
            asyncio.create_task(_periodically(self.tick_s, self.settle, "sampling decisions")),
            asyncio.create_task(_periodically(self.retention_interval_s, self.enforce_retention, "retention")),
        ]

    async def stop(self) -> None:
        """Stop the loops and close the database; traces still pending stay pending on disk."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._readers is not None:
            self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        # the writer closes last: the last connection to close folds the WAL into the database
        await asyncio.to_thread(self.writer.stop)
        await asyncio.to_thread(self.decoder.stop)
        sys.setswitchinterval(self._switch_interval)

    # ---- writes --------------------------------------------------------------------------------

    async def write_spans(self, spans: DecodedSpans) -> int:
        """Store a request's spans (after the sampler's say on late ones); returns how many were written.
        Returns once they are committed.

        The sampler is asked here, on the event loop, and the job submitted before anything else can
        ask it (see :mod:`sampling_loop`): the writer thread only writes."""
        if not spans.count:
            return 0
        admitted = self.sampling.offer(spans, self.clock())
        if admitted is None:
            return 0

        def job(conn: sqlite3.Connection) -> int:
            ids = self._resources.resolve(conn, spans.resources)
            return self.sampling.store(conn, admitted, ids, self.wall_ns() / 1e9)

        return await self.writer.run(job, grouped=True)

    async def write_logs(self, logs: DecodedLogs) -> None:
        def job(conn: sqlite3.Connection) -> None:
            insert_logs(conn, logs, self._resources.resolve(conn, logs.resources))

        if logs.rows:
            await self.writer.run(job, grouped=True)

    async def write_metrics(self, metrics: DecodedMetrics) -> None:
        def job(conn: sqlite3.Connection) -> None:
            insert_metrics(conn, metrics, self._series.resolve(conn, metrics.series))

        if metrics.points:
            await self.writer.run(job, grouped=True)

    def _forget_ids(self) -> None:
        # a rolled-back transaction may have taken new resource or series rows with it
        self._resources.forget()
        self._series.forget()

    async def settle(self) -> list[tuple[str, Decision]]:
        """Decide the traces whose wait is over and apply the decisions (decided here, on the event
        loop, and applied by a job submitted at once: see :mod:`sampling_loop`)."""
        due = self.sampling.due(self.clock())
        if due:
            await self.writer.run(lambda conn: self.sampling.apply(conn, due))
        return due

    async def enforce_retention(self) -> RetentionReport:
        """Delete what is past the limits (in bounded passes), then reclaim space if much is free."""
        total = RetentionReport()
        while True:
            report = await self.writer.run(self._retention_job)
            for name in ("traces", "spans", "logs", "points", "series"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            if not report.more:
                break
        if total.deleted_anything:
            await self.writer.run(retention.reclaim_space)
            log.info(
                "retention deleted %d traces (%d spans), %d logs, %d metric points",
                total.traces,
                total.spans,
                total.logs,
                total.points,
            )
        return total

    def _retention_job(self, conn: sqlite3.Connection) -> RetentionReport:
        report = retention.retention_pass(conn, self.retention_policy, self.wall_ns())
        if report.series:
            self._series.forget()
        return report

    # ---- reads ---------------------------------------------------------------------------------

    async def read(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``query(conn, *args, **kwargs)`` on a reader thread with its read-only connection."""
        if self._readers is None:
            raise RuntimeError("the telemetry store is not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, partial(self._read, query, *args, **kwargs))

    def _read(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._reader_local.conn = connect_reader(self.path)
            with self._reader_lock:
                self._reader_conns.append(conn)
        return query(conn, *args, **kwargs)

    def sampling_status(self) -> dict[str, object]:
        return self.sampling.status()


async def _periodically(interval_s: float, action: Callable[[], Awaitable[object]], what: str) -> None:
    """Run ``action`` every ``interval_s`` until cancelled; a failed round is logged, the next one runs."""
    while True:
        started = time.monotonic()
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %.2f s", what, interval_s)
        await asyncio.sleep(max(0.0, interval_s - (time.monotonic() - started)))
