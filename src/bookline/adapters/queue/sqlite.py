"""The embedded message queue: one SQLite file shared by every process of a local run.

Producers (confirmation-service's outbox relay) and consumers (notification-service) open the same
file. Every write is a ``BEGIN IMMEDIATE`` transaction, so claims are serialized by SQLite's write
lock and two consumer processes never claim the same message at the same time.

Tables:

* ``messages``: every message ever published, in publication order (``seq``); acked messages stay,
  they are the record of what was sent.
* ``deliveries``: one row per (consumer group, message): ``pending`` (visible once ``visible_at`` is
  past) or ``acked``. A claim pushes ``visible_at`` one visibility timeout ahead; a claim that is not
  acked in time therefore makes the message visible again (at-least-once).
* ``cursors``: per (consumer group, topic), the last message ``seq`` fanned out into ``deliveries``.
  A group seen for the first time starts at the beginning of the topic.
* ``redeliveries``: the messages the fault ``queue.redelivery_rate`` delivered once more after their
  ack, as a broker that lost an ack does (so consumers prove they deduplicate); one row per
  (group, message), so a message is redelivered this way at most once.

Each operation runs as one transaction in a worker thread (``asyncio.to_thread``), so a cancelled
caller never leaves a transaction half open. There is no polling loop here: callers poll.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import trace

from bookline.adapters.queue.port import Delivery, QueueClosed
from bookline.faults import fire, strikes

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        body TEXT NOT NULL,
        headers TEXT NOT NULL,
        published_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS ix_messages_topic_seq ON messages (topic, seq)",
    """CREATE TABLE IF NOT EXISTS deliveries (
        consumer TEXT NOT NULL,
        message_id TEXT NOT NULL REFERENCES messages (message_id),
        topic TEXT NOT NULL,
        seq INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'acked')),
        visible_at REAL NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        acked_at REAL,
        PRIMARY KEY (consumer, message_id)
    )""",
    # what receive scans: only the pending rows of one group, soonest visible first
    "CREATE INDEX IF NOT EXISTS ix_deliveries_claimable ON deliveries (consumer, state, visible_at, seq)",
    """CREATE TABLE IF NOT EXISTS cursors (
        consumer TEXT NOT NULL,
        topic TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        PRIMARY KEY (consumer, topic)
    )""",
    """CREATE TABLE IF NOT EXISTS redeliveries (
        consumer TEXT NOT NULL,
        message_id TEXT NOT NULL,
        redelivered_at REAL NOT NULL,
        PRIMARY KEY (consumer, message_id)
    )""",
)


class SqliteQueue:
    """A :class:`~bookline.adapters.queue.port.MessageQueue` in one SQLite file (WAL).

    The file and its tables are created on first use; the constructor does no I/O besides creating
    the parent folder. ``redelivery_rate`` (the fault ``queue.redelivery_rate``, asked on every ack)
    is the probability that an acked message is delivered once more, ``redelivery_delay_s`` later.
    """

    messaging_system = "bookline-sqlite-queue"

    def __init__(
        self,
        path: Path,
        *,
        visibility_timeout_s: float,
        redelivery_rate: Callable[[], float | None] | None = None,
        redelivery_delay_s: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if visibility_timeout_s <= 0:
            raise ValueError("visibility_timeout_s must be positive")
        self.path = Path(path)
        self.visibility_timeout_s = visibility_timeout_s
        self.redelivery_rate = redelivery_rate
        self.redelivery_delay_s = redelivery_delay_s
        self._rng = rng or random.Random()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        # one connection, used by one worker thread at a time
        self._lock = threading.Lock()

    # -- the port -----------------------------------------------------------------------------

    async def publish(self, topic: str, body: dict[str, Any], *, headers: dict[str, str], message_id: str) -> None:
        body_json = json.dumps(body, separators=(",", ":"))
        headers_json = json.dumps(dict(headers), separators=(",", ":"))

        def run(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.execute(
                    "INSERT INTO messages (message_id, topic, body, headers, published_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_id) DO NOTHING",
                    (message_id, topic, body_json, headers_json, time.time()),
                )

        await self._run(run)

    async def receive(self, topics: list[str], *, consumer: str, max_messages: int = 10) -> list[Delivery]:
        if not topics or max_messages <= 0:
            return []
        topics = sorted(set(topics))

        def run(conn: sqlite3.Connection) -> list[Delivery]:
            now = time.time()
            # a plain read first: an idle poll must not take the write lock away from producers
            if not self._has_work(conn, topics, consumer, now):
                return []
            with _immediate(conn):
                self._fan_out(conn, topics, consumer)
                return self._claim(conn, topics, consumer, max_messages, time.time())

        return await self._run(run)

    async def ack(self, delivery: Delivery) -> None:
        """Settle a delivery, unless the fault ``queue.redelivery_rate`` strikes: then the message is
        delivered once more later, and the event ``fault_injected`` goes on the span of the caller
        that acked it (the consumer's process span, current here)."""
        redeliver = strikes(self.redelivery_rate() if self.redelivery_rate else None, self._rng)

        def run(conn: sqlite3.Connection) -> bool:
            with _immediate(conn):
                if redeliver and self._redeliver_later(conn, delivery):
                    return True
                conn.execute(
                    "UPDATE deliveries SET state = 'acked', acked_at = ?"
                    " WHERE consumer = ? AND message_id = ? AND state = 'pending' AND attempt = ?",
                    (time.time(), delivery.consumer, delivery.message_id, delivery.attempt),
                )
                return False

        if await self._run(run):
            fire(trace.get_current_span(), "queue.redelivery_rate")

    async def nack(self, delivery: Delivery, *, delay_s: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            with _immediate(conn):
                conn.execute(
                    "UPDATE deliveries SET visible_at = ?"
                    " WHERE consumer = ? AND message_id = ? AND state = 'pending' AND attempt = ?",
                    (
                        time.time() + max(0.0, delay_s),
                        delivery.consumer,
                        delivery.message_id,
                        delivery.attempt,
                    ),
                )

        await self._run(run)

    async def close(self) -> None:
        def run() -> None:
            with self._lock:
                self._closed = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(run)

    # -- the transactions ---------------------------------------------------------------------

    def _redeliver_later(self, conn: sqlite3.Connection, delivery: Delivery) -> bool:
        """Keep an acked delivery pending, visible again after the redelivery delay; False when this
        message was redelivered so before, or the claim is no longer the caller's."""
        key = (delivery.consumer, delivery.message_id)
        if conn.execute("SELECT 1 FROM redeliveries WHERE consumer = ? AND message_id = ?", key).fetchone():
            return False
        now = time.time()
        moved = conn.execute(
            "UPDATE deliveries SET visible_at = ?"
            " WHERE consumer = ? AND message_id = ? AND state = 'pending' AND attempt = ?",
            (now + max(0.0, self.redelivery_delay_s), *key, delivery.attempt),
        ).rowcount
        if not moved:
            return False
        conn.execute("INSERT INTO redeliveries (consumer, message_id, redelivered_at) VALUES (?, ?, ?)", (*key, now))
        return True

    @staticmethod
    def _has_work(conn: sqlite3.Connection, topics: list[str], consumer: str, now: float) -> bool:
        """Whether a claim could find anything (read only; the claim itself re-checks)."""
        marks = ",".join("?" * len(topics))
        if conn.execute(
            "SELECT 1 FROM deliveries WHERE consumer = ? AND state = 'pending' AND visible_at <= ?"
            f" AND topic IN ({marks}) LIMIT 1",
            (consumer, now, *topics),
        ).fetchone():
            return True
        cursors = dict(
            conn.execute(
                f"SELECT topic, last_seq FROM cursors WHERE consumer = ? AND topic IN ({marks})",
                (consumer, *topics),
            ).fetchall()
        )
        return any(
            conn.execute(
                "SELECT 1 FROM messages WHERE topic = ? AND seq > ? LIMIT 1",
                (topic, cursors.get(topic, 0)),
            ).fetchone()
            for topic in topics
        )

    @staticmethod
    def _fan_out(conn: sqlite3.Connection, topics: list[str], consumer: str) -> None:
        """Give the group a pending delivery of every message published since its cursor."""
        for topic in topics:
            row = conn.execute(
                "SELECT last_seq FROM cursors WHERE consumer = ? AND topic = ?", (consumer, topic)
            ).fetchone()
            last_seq = row[0] if row else 0
            (max_seq,) = conn.execute(
                "SELECT MAX(seq) FROM messages WHERE topic = ? AND seq > ?", (topic, last_seq)
            ).fetchone()
            if max_seq is None:
                continue
            conn.execute(
                "INSERT INTO deliveries (consumer, message_id, topic, seq, state, visible_at, attempt)"
                " SELECT ?, message_id, topic, seq, 'pending', published_at, 0 FROM messages"
                " WHERE topic = ? AND seq > ? AND seq <= ?"
                " ON CONFLICT (consumer, message_id) DO NOTHING",
                (consumer, topic, last_seq, max_seq),
            )
            conn.execute(
                "INSERT INTO cursors (consumer, topic, last_seq) VALUES (?, ?, ?)"
                " ON CONFLICT (consumer, topic) DO UPDATE SET last_seq = excluded.last_seq",
                (consumer, topic, max_seq),
            )

    def _claim(
        self,
        conn: sqlite3.Connection,
        topics: list[str],
        consumer: str,
        max_messages: int,
        now: float,
    ) -> list[Delivery]:
        marks = ",".join("?" * len(topics))
        # pending and visible = never claimed, nacked and due, or claimed and the claim expired
        rows = conn.execute(
            "UPDATE deliveries SET visible_at = ?, attempt = attempt + 1"
            " WHERE consumer = ? AND message_id IN ("
            "  SELECT message_id FROM deliveries"
            "  WHERE consumer = ? AND state = 'pending' AND visible_at <= ?"
            f"  AND topic IN ({marks})"
            "  ORDER BY visible_at, seq LIMIT ?)"
            " AND state = 'pending' AND visible_at <= ?"
            " RETURNING message_id, attempt, seq",
            (now + self.visibility_timeout_s, consumer, consumer, now, *topics, max_messages, now),
        ).fetchall()
        if not rows:
            return []
        attempts = {message_id: (attempt, seq) for message_id, attempt, seq in rows}
        id_marks = ",".join("?" * len(attempts))
        messages = conn.execute(
            f"SELECT message_id, topic, body, headers, published_at FROM messages WHERE message_id IN ({id_marks})",
            tuple(attempts),
        ).fetchall()
        deliveries = [
            Delivery(
                message_id=message_id,
                topic=topic,
                body=json.loads(body),
                headers=json.loads(headers),
                published_at=published_at,
                attempt=attempts[message_id][0],
                consumer=consumer,
            )
            for message_id, topic, body, headers, published_at in messages
        ]
        deliveries.sort(key=lambda d: attempts[d.message_id][1])
        return deliveries

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn(self._connection())

        return await asyncio.to_thread(locked)

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise QueueClosed(f"the queue {self.path} is closed")
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,  # we issue BEGIN IMMEDIATE ourselves
                check_same_thread=False,  # used by one worker thread at a time, under self._lock
            )
            try:
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                _enable_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
                with _immediate(conn):
                    for statement in _SCHEMA:
                        conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL; it persists, so only the first opener of a new file changes it.

    SQLite answers "database is locked" at once, without its busy handler, when another connection
    is switching the journal mode of the same new file, so the wait is ours.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
            continue
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use WAL for the queue file (mode {mode})")
        return


class _immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, _exc: object, _tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
