"""Decoding large span exports in a worker process.

Turning protobuf spans into rows is pure Python work, about two thirds of the store's CPU per span,
and a Python process runs Python on one core at a time; the store's own process also serves HTTP,
feeds the sampler and drives the writer. Large span exports are therefore decoded in a worker
process, which hands back the rows as the one flat list of values the spans INSERT binds
(:func:`~bookline.services.telemetry.decoding.span_values`: strings and integers, no tuple per span to
pickle, unpickle or take apart again on the writer thread; a trace's rows share one trace id string
and a name's rows one name string, which pickle sends once). The sampler's facts are packed from
those values column by column (attributes stay the row's JSON text until a policy reads them, see
:data:`~bookline.services.telemetry.sampling.PackedFacts`).

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
    facts_of_values,
    span_values,
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


PIPE_BYTES = 1024 * 1024  # Linux's default /proc/sys/fs/pipe-max-size: what any process may ask for


def _widen_pipes(pool: ProcessPoolExecutor) -> None:
    """Give the pool's pipes room for a whole export and its rows (best effort: Linux only).

    The worker hands back a request's rows (some 250 KB for 512 spans) through a pipe of 64 KB by
    default: it waited until the store's result thread, which needs this process's GIL, had read
    all but the last 64 KB, before it could take the next export. With 1 MB, it writes them and goes
    on decoding; in bench/telemetry.py, an export's wait for its decoding fell from about 25 ms to 18.
    The queues are made by the executor's constructor (private attributes: skipped if they move)."""
    if not sys.platform.startswith("linux"):
        return
    import fcntl  # POSIX only: imported where Linux is known

    ends = (
        getattr(getattr(pool, "_result_queue", None), "_reader", None),
        getattr(getattr(pool, "_call_queue", None), "_writer", None),
    )
    for end in ends:
        try:
            fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[union-attr]
        except (AttributeError, OSError, ValueError):
            log.debug("could not widen a pipe of the decoding worker", exc_info=True)


def _decode_in_worker(body: bytes, content_encoding: str | None, encoding: str, redact: bool) -> tuple[Any, ...]:
    # the facts are packed from the rows on the store's side: sending them too would cost more
    request = parse_request(REQUESTS["traces"], decompress(body, content_encoding), encoding)
    decoded = decode_spans(request, redact, facts=False)  # type: ignore[arg-type]
    return (
        span_values(decoded.rows),
        {
            trace_id: (d.start_ns, d.end_ns, d.span_count, d.error, d.root_service, d.root_name, d.booking_outcome)
            for trace_id, d in decoded.traces.items()
        },
        decoded.resources,
        decoded.rejected.count,
        decoded.rejected.reasons,
    )


def _rebuild(
    values: list[Any],
    traces: dict[str, tuple[Any, ...]],
    resources: list[str],
    rejected: int,
    reasons: dict[str, int],
) -> DecodedSpans:
    return DecodedSpans(
        None,
        facts_of_values(values, resources),
        {t: TraceDelta(*delta) for t, delta in traces.items()},
        resources,
        Rejections(rejected, reasons),
        values=values,
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
            _widen_pipes(self._pool)
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
