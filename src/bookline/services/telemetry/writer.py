"""The store's single writer: one thread that owns the writing SQLite connection and runs jobs in
the order they were submitted.

One writer means no lock contention inside SQLite, and a total order between what the request
handlers write and what the sampling loop decides: a span batch submitted before a trace's decision
is always written before that decision deletes or keeps the trace.

Ingest jobs are *grouped*: every one waiting when the writer gets to them runs in one transaction
(each inside its own savepoint, so a failing one is undone alone), and one commit — one fsync —
makes the whole group durable before any of its submitters hears back. Under load that turns a
dozen commits into one; a lone job is simply a transaction of its own.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

log = logging.getLogger("bookline.telemetry.writer")

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
MAX_GROUP = 32  # ingest jobs per transaction: bounds how long the first of them waits for the commit


class WriterClosedError(RuntimeError):
    """A job was submitted after the writer stopped."""


class _Item:
    __slots__ = ("job", "future", "grouped")

    def __init__(self, job: Job, future: Future[Any], grouped: bool) -> None:
        self.job, self.future, self.grouped = job, future, grouped


_STOP = _Item(lambda conn: None, Future(), grouped=False)


class Writer:
    """Runs ``job(conn)`` callables one at a time on a dedicated thread.

    A job submitted with ``grouped=True`` runs inside a transaction the writer opens (it must not
    begin or commit one itself); any other job manages its own transactions.
    ``on_rollback`` is called (on the writer thread) when a group's transaction is rolled back.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        on_rollback: Callable[[], None] | None = None,
        name: str = "telemetry-writer",
    ) -> None:
        self._connect = connect
        self._on_rollback = on_rollback or (lambda: None)
        self._items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = Future[None]()
        self._closed = False

    def start(self) -> None:
        """Start the thread and wait until its connection is open (re-raising what failed)."""
        self._thread.start()
        self._started.result()

    def submit(self, job: Callable[[sqlite3.Connection], T], *, grouped: bool = False) -> Future[T]:
        if self._closed:
            raise WriterClosedError("the telemetry writer is stopped")
        future: Future[T] = Future()
        self._items.put(_Item(job, future, grouped))
        return future

    async def run(self, job: Callable[[sqlite3.Connection], T], *, grouped: bool = False) -> T:
        """Submit a job and wait for it (for a grouped one: until its group committed)."""
        return await asyncio.wrap_future(self.submit(job, grouped=grouped))

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the jobs already submitted, then close the connection."""
        if self._closed:
            return
        self._closed = True
        self._items.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that started us
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        pending: _Item | None = None
        try:
            while True:
                item = pending if pending is not None else self._items.get()
                pending = None
                if item is _STOP:
                    break
                if not item.grouped:
                    self._run_alone(conn, item)
                    continue
                group = [item]
                while len(group) < MAX_GROUP:
                    try:
                        follower = self._items.get_nowait()
                    except queue.Empty:
                        break
                    if not follower.grouped:
                        pending = follower  # a barrier (or the stop): it comes after this group
                        break
                    group.append(follower)
                self._run_group(conn, group)
        finally:
            conn.close()

    @staticmethod
    def _run_alone(conn: sqlite3.Connection, item: _Item) -> None:
        if not item.future.set_running_or_notify_cancel():
            return
        try:
            item.future.set_result(item.job(conn))
        except BaseException as exc:  # noqa: BLE001 - the submitter decides what a failure means
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            item.future.set_exception(exc)

    def _run_group(self, conn: sqlite3.Connection, group: list[_Item]) -> None:
        done: list[tuple[_Item, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for item in group:
                if not item.future.set_running_or_notify_cancel():
                    continue
                conn.execute("SAVEPOINT job")
                try:
                    result = item.job(conn)
                except Exception as exc:  # noqa: BLE001 - this job alone is undone and told
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    self._on_rollback()
                    item.future.set_exception(exc)
                    continue
                conn.execute("RELEASE job")
                done.append((item, result))
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - nothing of the group was stored
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._on_rollback()
            for item, _ in done:
                item.future.set_exception(exc)
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for item, result in done:
            item.future.set_result(result)
