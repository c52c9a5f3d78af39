"""Decoding large span exports in a worker process.

Turning protobuf spans into rows is pure Python work, about two thirds of the store's CPU per span,
and a Python process runs Python on one core at a time; the store's own process also serves HTTP,
feeds the sampler and drives the writer. Large span exports are therefore decoded in a worker
process, which hands back only the rows (plain tuples of strings and integers: about a
microsecond per span to pickle and unpickle). The sampler's facts are packed from the rows (a plain
tuple per span, a tenth of a microsecond; attributes stay the row's JSON text until a policy reads
them, see :data:`~bookline.services.telemetry.sampling.PackedFacts`).

Small exports (a quiet laptop, the test suite) and logs and metrics are decoded in place: a process
hop would cost them more than it saves. The worker starts with the first large export, with
``spawn`` (the store already runs threads, which ``fork`` would copy in an undefined state). If it
dies, exports are decoded in place from then on.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from bookline.services.telemetry.decoding import (
    Decoded,
    DecodedSpans,
    Rejections,
    TraceDelta,
    decode_export,
    decode_spans,
    facts_of,
)
from bookline.services.telemetry.otlp import REQUESTS, decompress, parse_request

log = logging.getLogger("bookline.telemetry.decode")

# span exports at least this large on the wire go to the worker (about a hundred spans)
WORKER_BYTES = 32 * 1024


_PR_SET_PDEATHSIG = 1


def _die_with_the_store(store_pid: int) -> None:
    """In the worker, first: the kernel kills it when the store's process dies, even by SIGKILL,
    where no clean-up code of the store runs (best effort: Linux only)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            return
        if os.getppid() != store_pid:  # the store died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)


def _decode_in_worker(body: bytes, content_encoding: str | None, encoding: str, redact: bool) -> tuple[Any, ...]:
    # the facts are packed from the rows on the store's side: sending them too would cost more
    request = parse_request(REQUESTS["traces"], decompress(body, content_encoding), encoding)
    decoded = decode_spans(request, redact, facts=False)  # type: ignore[arg-type]
    return (
        decoded.rows,
        {
            trace_id: (d.start_ns, d.end_ns, d.span_count, d.error, d.root_service, d.root_name, d.booking_outcome)
            for trace_id, d in decoded.traces.items()
        },
        decoded.resources,
        decoded.rejected.count,
        decoded.rejected.reasons,
    )


def _rebuild(
    rows: list[Any],
    traces: dict[str, tuple[Any, ...]],
    resources: list[str],
    rejected: int,
    reasons: dict[str, int],
) -> DecodedSpans:
    return DecodedSpans(
        rows,
        facts_of(rows, resources),
        {t: TraceDelta(*delta) for t, delta in traces.items()},
        resources,
        Rejections(rejected, reasons),
    )


class DecodePool:
    """Decodes export requests: large span exports in a worker process, everything else in place."""

    def __init__(self, workers: int = 1, *, redact: bool = True) -> None:
        self.workers = workers
        self.redact = redact
        self._pool: ProcessPoolExecutor | None = None

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def decode(self, signal: str, body: bytes, content_encoding: str | None, encoding: str) -> Decoded:
        if signal != "traces" or self.workers <= 0 or len(body) < WORKER_BYTES:
            return decode_export(signal, body, content_encoding, encoding, self.redact)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with_the_store,
                initargs=(os.getpid(),),
            )
        loop = asyncio.get_running_loop()
        try:
            transferred = await loop.run_in_executor(
                self._pool, _decode_in_worker, body, content_encoding, encoding, self.redact
            )
        except BrokenProcessPool:
            # a worker that died once (out of memory, cannot start) would likely die again
            log.exception("the decoding worker process died; decoding in this process from now on")
            self.workers = 0
            self.stop()
            return decode_export(signal, body, content_encoding, encoding, self.redact)
        return _rebuild(*transferred)
