"""The store's single writer thread: jobs run in submission order, waiting ingest jobs share one
transaction (one commit) with each failure undone alone, and other jobs are barriers between groups."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bookline.services.telemetry.writer import Writer, WriterClosedError


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS log (n INTEGER)")
    return conn


class Probe:
    """Counts the commits the writer's connection makes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits = 0
        self.rollbacks = 0

    def connect(self) -> sqlite3.Connection:
        conn = connect(self.path)
        conn.set_trace_callback(self._statement)
        return conn

    def _statement(self, sql: str) -> None:
        if sql == "COMMIT":
            self.commits += 1

    def rows(self) -> list[int]:
        with sqlite3.connect(self.path) as reader:
            return [n for (n,) in reader.execute("SELECT n FROM log ORDER BY rowid")]


@pytest.fixture
def probe(tmp_path: Path) -> Probe:
    return Probe(tmp_path / "writer.db")


@pytest.fixture
def writer(probe: Probe) -> Iterator[Writer]:
    w = Writer(probe.connect, on_rollback=lambda: setattr(probe, "rollbacks", probe.rollbacks + 1))
    w.start()
    yield w
    w.stop()


def insert(n: int):
    def job(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO log VALUES (?)", (n,))
        return n

    return job


def hold_until(gate: threading.Event):
    def job(conn: sqlite3.Connection) -> None:
        gate.wait(5)

    return job


def test_ingest_jobs_waiting_together_share_one_commit_and_keep_their_order(writer: Writer, probe: Probe):
    gate = threading.Event()
    writer.submit(hold_until(gate))  # keeps the writer busy while the others queue up
    futures = [writer.submit(insert(n), grouped=True) for n in range(10)]
    gate.set()
    assert [f.result(5) for f in futures] == list(range(10))
    assert probe.rows() == list(range(10))
    assert probe.commits == 1


def test_a_failing_job_in_a_group_is_undone_alone_and_the_others_commit(writer: Writer, probe: Probe):
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO log VALUES (99)")
        raise ValueError("bad batch")

    gate = threading.Event()
    writer.submit(hold_until(gate))
    first = writer.submit(insert(1), grouped=True)
    failing = writer.submit(broken, grouped=True)
    last = writer.submit(insert(2), grouped=True)
    gate.set()
    assert (first.result(5), last.result(5)) == (1, 2)
    with pytest.raises(ValueError, match="bad batch"):
        failing.result(5)
    assert probe.rows() == [1, 2]
    assert probe.rollbacks == 1  # the store forgets cached row ids that the undone job may have added


def test_a_job_that_is_not_grouped_is_a_barrier_between_two_groups(writer: Writer, probe: Probe):
    gate = threading.Event()
    writer.submit(hold_until(gate))
    seen: list[list[int]] = []

    def look(conn: sqlite3.Connection) -> None:
        seen.append([n for (n,) in conn.execute("SELECT n FROM log ORDER BY rowid")])

    before = [writer.submit(insert(n), grouped=True) for n in (1, 2)]
    barrier = writer.submit(look)
    after = [writer.submit(insert(n), grouped=True) for n in (3, 4)]
    gate.set()
    for future in (*before, barrier, *after):
        future.result(5)
    assert seen == [[1, 2]]  # the barrier saw the first group committed and nothing of the second
    assert probe.rows() == [1, 2, 3, 4]
    assert probe.commits == 2


def test_a_grouped_job_is_answered_only_after_its_commit(writer: Writer, probe: Probe):
    def check_uncommitted(conn: sqlite3.Connection) -> bool:
        return conn.in_transaction  # grouped jobs run inside the writer's transaction

    assert writer.submit(check_uncommitted, grouped=True).result(5) is True
    assert writer.submit(insert(7), grouped=True).result(5) == 7
    assert probe.rows() == [7]  # visible to another connection once the submitter has its answer


def test_stopping_finishes_queued_jobs_then_refuses_new_ones(probe: Probe):
    writer = Writer(probe.connect)
    writer.start()
    futures = [writer.submit(insert(n), grouped=True) for n in range(3)]
    started = time.monotonic()
    writer.stop()
    assert time.monotonic() - started < 5  # the stop is not lost behind a group of queued jobs
    assert [f.result(0) for f in futures] == [0, 1, 2]
    with pytest.raises(WriterClosedError):
        writer.submit(insert(4))


def test_a_connection_that_cannot_open_fails_the_start(tmp_path: Path):
    def refuse() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    with pytest.raises(sqlite3.OperationalError):
        Writer(refuse).start()
