"""The chaos test of issue 4: Bookline on its worst day, as a user runs it.

``bookline up`` with faults on (20% declines, 5% gateway timeouts, 2% gateway 500s, 10% failed
e-mail deliveries, 10% queue redeliveries), ``bookline load`` driving bookings, duplicates and
cancellations with a share fighting over hot rooms, and booking-service crashed hard at saga points
a few times while the load runs. Once the load stops and the reconcilers have run, ``bookline audit``
must find every invariant intact. The same run with the room-night key switched off must make the
audit fail: the audit is proven able to see what it checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bookline.config import SERVICES, TELEMETRY_STORE
from support.nats import NATS_URL, delete_streams, require_nats
from support.postgres import PG_URL, drop_schemas, new_prefix, require_postgres
from support.up import RunningUp, bookline_up, up_env

pytestmark = pytest.mark.stack

FAULTS = (
    "gateway.decline_rate=0.2",
    "gateway.timeout_rate=0.05",
    "gateway.error_rate=0.02",
    "notification.failure_rate=0.1",
    "queue.redelivery_rate=0.1",
)
# recovery, reconcilers and the audit on a test's time scale rather than a production one
FAST_RECOVERY = {
    "BOOKLINE_SERVICE_RESTART_LIMIT": "20",
    "BOOKLINE_PAYMENT_TIMEOUT_S": "0.6",
    "BOOKLINE_GATEWAY_SLOW_RESPONSE_S": "1.0",
    "BOOKLINE_SAGA_STALE_AFTER_S": "3",
    "BOOKLINE_SAGA_RECOVERY_INTERVAL_S": "0.5",
    "BOOKLINE_RECONCILE_INTERVAL_S": "0.5",
    "BOOKLINE_RECONCILE_SETTLE_AFTER_S": "3",
    "BOOKLINE_HOLD_SWEEP_INTERVAL_S": "1",
    "BOOKLINE_AUDIT_GRACE_S": "2",
}
CRASH_POINTS = ("after_authorize", "after_confirm", "after_authorize")


def bookline(up: RunningUp, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """A ``bookline`` command in a process of its own, pointed at this stack (its ports)."""
    ports = {s.key: urlsplit(up.url(s.name)).port for s in (*SERVICES, TELEMETRY_STORE)}
    env = up_env(ports, {**FAST_RECOVERY, "COLUMNS": "160"})
    return subprocess.run(
        [sys.executable, "-m", "bookline", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def set_faults(up: RunningUp, data_dir: Path, *assignments: str) -> None:
    done = bookline(up, "faults", "set", *assignments, "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stdout + done.stderr


CRASHED = re.compile(r"booking-service(#\d+)? exited unexpectedly")


def crashes(up: RunningUp) -> int:
    """How often booking-service (any replica of it) exited at a crash point."""
    return sum(bool(CRASHED.search(line)) for line in up.lines)


def answering(up: RunningUp, stop: threading.Event, timeout: float = 30.0) -> None:
    """Wait until booking-service answers again (or the load is over)."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if httpx.get(f"{up.url('booking-service')}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        stop.wait(0.1)


def crash_a_few_times(up: RunningUp, data_dir: Path, stop: threading.Event) -> list[str]:
    """Turn each crash point on until booking-service dies at it once, then off again. Between two
    crashes booking-service serves for a few seconds once it is back, however long a busy machine
    takes to start it again: the load must find it up most of the time, not only crashing."""
    hit = []
    for point in CRASH_POINTS:
        answering(up, stop)
        if stop.wait(4.0):
            break
        before = crashes(up)
        set_faults(up, data_dir, f"crash.{point}=1")
        deadline = time.monotonic() + 20
        while crashes(up) == before and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.05)
        set_faults(up, data_dir, f"crash.{point}=")
        if crashes(up) > before:
            hit.append(point)
    return hit


def run_load(up: RunningUp, report: Path, *options: str, seed: int = 4) -> dict[str, Any]:
    done = bookline(up, "load", "--json", str(report), "--seed", str(seed), "--data-dir", str(up.data_dir), *options)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(report.read_text())


def in_flight(report: dict[str, Any]) -> bool:
    """Whether the audit left bookings unjudged because they were touched within its grace period."""
    return any("in flight" in note for check in report["checks"] for note in check["notes"])


def audit_until_settled(up: RunningUp, data_dir: Path, report: Path, timeout: float) -> tuple[int, str, dict]:
    """The audit, again every few seconds until every booking is settled (none in flight, none
    pending: recovery and the reconcilers have run); the last answer. A service the audit cannot read
    (booking-service starting again after a crash at the very end of the load) is not settled either."""
    deadline = time.monotonic() + timeout
    while True:
        done = bookline(up, "audit", "--json", str(report), "--data-dir", str(data_dir))
        result = (done.returncode, done.stdout + done.stderr, json.loads(report.read_text()))
        readable = "unreadable" not in result[2]
        settled = readable and not in_flight(result[2]) and "pending" not in result[2]["bookings"]
        if settled or time.monotonic() > deadline:
            return result
        time.sleep(2)


def outcomes(load: dict[str, Any], operation: str) -> dict[str, int]:
    return load["operations"].get(operation, {}).get("outcomes", {})


def worst_day(
    up: RunningUp, data_dir: Path, tmp_path: Path, *, kill_replicas: bool = False
) -> tuple[dict[str, Any], list[str], list[tuple[int, float]]]:
    """The faults on, a load of bookings, duplicates and cancellations with hot rooms, booking-service
    crashed at saga points meanwhile (and with ``kill_replicas``, one replica of booking- and of
    availability-service killed 10 s in); the crash points off again. The load's report, the crash
    points hit, the pids killed."""
    set_faults(up, data_dir, *FAULTS)
    stop = threading.Event()
    hit: list[str] = []
    killed: list[tuple[int, float]] = []
    threads = [threading.Thread(target=lambda: hit.extend(crash_a_few_times(up, data_dir, stop)))]
    if kill_replicas:
        threads.append(threading.Thread(target=lambda: killed.extend(kill_one_replica_each(up, stop, 10.0))))
    for thread in threads:
        thread.start()
    try:
        load = run_load(
            up, tmp_path / "load.json", "--rate", "15", "--duration", "25s", "--concurrency", "64",
            "--mix", "search=10,book=70,cancel=10,duplicate=10", "--hot-rooms", "2",
        )  # fmt: skip
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    set_faults(up, data_dir, *(f"crash.{p}=" for p in set(CRASH_POINTS)))
    return load, hit, killed


def fault_events(data_dir: Path) -> set[str]:
    """The names of the faults that fired, as the spans stored in the local telemetry store tell."""
    names = set()
    with sqlite3.connect(data_dir / "telemetry.db") as conn:
        for (events,) in conn.execute("SELECT events FROM spans WHERE events LIKE '%fault_injected%'"):
            for event in json.loads(events):
                if event.get("name") == "fault_injected":
                    attributes = event.get("attributes") or {}
                    names.add(attributes.get("fault.name"))
    return names


def test_no_booking_and_no_money_is_lost_under_faults_crashes_and_contention(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    with bookline_up(data_dir, env=FAST_RECOVERY, properties=6, rooms_per_property=10) as up:
        load, hit, _killed = worst_day(up, data_dir, tmp_path)

        code, output, report = audit_until_settled(up, data_dir, tmp_path / "audit.json", timeout=120)

        assert code == 0, output
        assert not in_flight(report) and "pending" not in report["bookings"], output
        assert all(c["status"] == "pass" for c in report["checks"]), output
        # the run was the worst day it was meant to be
        assert len(hit) >= 2 and crashes(up) >= 2, f"booking-service crashed {crashes(up)} times: {hit}"
        book = outcomes(load, "book")
        assert book.get("201", 0) >= 30, book
        assert book.get("402 payment_declined", 0) >= 10, book
        assert any(code.startswith("409") for code in book), book
        bookings = report["bookings"]
        assert sum(bookings.values()) >= 150, bookings
        assert bookings.get("failed", 0) >= 30 and bookings.get("cancelled", 0) >= 3, bookings
        traced = next(c for c in report["checks"] if c["check"] == "compensations_traced")
        assert traced["checked"] >= 20, traced
        fired = fault_events(data_dir)
        assert {"gateway.decline_rate", "gateway.timeout_rate", "notification.failure_rate",
                "queue.redelivery_rate", "crash.after_authorize"} <= fired, fired  # fmt: skip


BURSTS = 4


def test_control_without_the_room_night_key_the_audit_finds_the_double_booking(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = {**FAST_RECOVERY, "BOOKLINE_UNSAFE_DISABLE_ROOM_NIGHT_GUARD": "true"}
    with bookline_up(data_dir, env=env, properties=2, rooms_per_property=4) as up:
        set_faults(up, data_dir, *FAULTS)
        # a burst at the hot rooms: the first guests all find them free before any hold is placed. The
        # race is won by chance (how many searches run before the first hold lands): a burst that made
        # no double booking is followed by another, on other nights, a few times at most
        for attempt in range(BURSTS):
            run_load(
                up, tmp_path / f"load-{attempt}.json", "--rate", "300", "--duration", "1s", "--concurrency", "128",
                "--mix", "book=100", "--hot-rooms", "4", "--hot-share", "1", seed=4 + attempt,
            )  # fmt: skip
            time.sleep(3)  # past the audit's grace period
            done = bookline(up, "audit", "--json", str(tmp_path / "audit.json"), "--data-dir", str(data_dir))
            if done.returncode == 1:
                break

    report = json.loads((tmp_path / "audit.json").read_text())
    assert done.returncode == 1, done.stdout + done.stderr
    doubles = [
        v for v in report["violations"] if v["check"] in ("room_night_claimed_once", "confirmed_bookings_never_overlap")
    ]
    assert doubles, report["violations"]
    assert all(v["booking_id"] and v["trace_id"] for v in doubles), doubles
    assert doubles[0]["booking_id"] in done.stdout


# ---- the same day on PostgreSQL and NATS JetStream, two replicas of every service ------------------


def replicated_env(prefix: str, **extra: str) -> dict[str, str]:
    return {**FAST_RECOVERY, "BOOKLINE_DATABASE_URL": PG_URL, "BOOKLINE_DB_SCHEMA_PREFIX": prefix,
            "BOOKLINE_QUEUE_URL": NATS_URL, "BOOKLINE_QUEUE_STREAM_PREFIX": prefix, **extra}  # fmt: skip


def replica_pids(up: RunningUp, service: str) -> list[int]:
    """The processes ``bookline up`` runs for ``service``, one per replica."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == up.process.pid and service.encode() in cmdline:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def kill_one_replica_each(up: RunningUp, stop: threading.Event, after_s: float) -> list[tuple[int, float]]:
    """In the middle of the load, ``kill -9`` one replica of booking-service and of availability-service
    (each pid with the moment it was killed)."""
    if stop.wait(after_s):
        return []
    killed = []
    for service in ("booking-service", "availability-service"):
        pids = replica_pids(up, service)
        assert len(pids) == 2, (service, pids)
        killed_at = time.time()
        os.kill(pids[0], signal.SIGKILL)
        killed.append((pids[0], killed_at))
    return killed


# what a process killed with SIGKILL cannot have exported: the spans it ended in its last export
# interval (OTEL_BSP_SCHEDULE_DELAY, 200 ms here) and the export under way, taken generously
LOST_WITH_A_KILLED_PROCESS_S = 2.0


def lost_with_the_killed(report: dict[str, Any], prefix: str, killed_at: float) -> set[str]:
    """The bookings whose compensations_traced violation is the telemetry a killed replica still held:
    every step of theirs compensated in the moments before the kill (by whichever replica: the saga
    log does not say). A compensation the killed replica made earlier, or any replica later, must be
    traced."""
    import asyncpg

    suspects = {v["booking_id"] for v in report["violations"] if v["check"] == "compensations_traced"}
    if not suspects:
        return set()

    async def compensated_at() -> dict[str, list[float]]:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            rows = await conn.fetch(
                f'SELECT booking_id, updated_at FROM "{prefix}booking".saga_steps'
                " WHERE status = 'compensated' AND booking_id = ANY($1::text[])",
                list(suspects),
            )
        finally:
            await conn.close()
        found: dict[str, list[float]] = {}
        for row in rows:
            found.setdefault(row["booking_id"], []).append(row["updated_at"])
        return found

    return {
        booking_id
        for booking_id, moments in asyncio.run(compensated_at()).items()
        if all(killed_at - LOST_WITH_A_KILLED_PROCESS_S <= at <= killed_at for at in moments)
    }


def taken_over(prefix: str) -> int:
    """Bookings whose saga another replica finished or compensated (their fencing token went up)."""
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(PG_URL.replace("+asyncpg", ""))
        try:
            return int(await conn.fetchval(f'SELECT count(*) FROM "{prefix}booking".bookings WHERE fence > 1'))
        finally:
            await conn.close()

    return asyncio.run(count())


@pytest.mark.postgres
def test_replicated_on_postgres_and_nats_no_booking_and_no_money_is_lost_when_a_replica_is_killed(
    tmp_path: Path,
) -> None:
    require_postgres()
    require_nats()
    prefix = new_prefix()
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    try:
        with bookline_up(data_dir, env=replicated_env(prefix), properties=6, rooms_per_property=10,
                         args=("--replicas", "2")) as up:  # fmt: skip
            load, hit, killed = worst_day(up, data_dir, tmp_path, kill_replicas=True)

            code, output, report = audit_until_settled(up, data_dir, tmp_path / "audit.json", timeout=150)

            assert len(killed) == 2, killed
            # the one violation a kill -9 may leave: compensations whose spans died with the replica
            # that made them, unexported (each compensation before or after the kill is traced)
            lost = lost_with_the_killed(report, prefix, killed_at=killed[0][1])
            unexplained = [v for v in report["violations"] if v["booking_id"] not in lost
                           or v["check"] != "compensations_traced"]  # fmt: skip
            assert not unexplained, output
            assert len(lost) <= 3, (lost, output)
            assert code == 0 or lost, output
            assert not in_flight(report) and "pending" not in report["bookings"], output
            assert all(c["status"] == "pass" or c["check"] == "compensations_traced" for c in report["checks"]), output
            assert len(hit) >= 2, f"booking-service crashed {crashes(up)} times: {hit}"
            assert sum("was killed by SIGKILL" in line for line in up.lines) >= 2, up.output()[-3000:]
            # the bookings the killed and crashed replicas were running, finished by another one
            assert taken_over(prefix) >= 1
            book = outcomes(load, "book")
            assert book.get("201", 0) >= 30, book
            assert sum(report["bookings"].values()) >= 150, report["bookings"]
    finally:
        asyncio.run(drop_schemas(prefix))
        asyncio.run(delete_streams(prefix))


@pytest.mark.postgres
def test_control_replicated_without_the_room_night_key_the_audit_finds_the_double_booking(tmp_path: Path) -> None:
    require_postgres()
    require_nats()
    prefix = new_prefix()
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = replicated_env(prefix, BOOKLINE_UNSAFE_DISABLE_ROOM_NIGHT_GUARD="true")
    try:
        with bookline_up(data_dir, env=env, properties=2, rooms_per_property=4, args=("--replicas", "2")) as up:
            for attempt in range(BURSTS):
                run_load(
                    up, tmp_path / f"load-{attempt}.json", "--rate", "300", "--duration", "1s", "--concurrency",
                    "128", "--mix", "book=100", "--hot-rooms", "4", "--hot-share", "1", seed=4 + attempt,
                )  # fmt: skip
                time.sleep(3)
                done = bookline(up, "audit", "--json", str(tmp_path / "audit.json"), "--data-dir", str(data_dir))
                if done.returncode == 1:
                    break
        report = json.loads((tmp_path / "audit.json").read_text())
        assert done.returncode == 1, done.stdout + done.stderr
        doubles = [v for v in report["violations"]
                   if v["check"] in ("room_night_claimed_once", "confirmed_bookings_never_overlap")]  # fmt: skip
        assert doubles, report["violations"]
    finally:
        asyncio.run(drop_schemas(prefix))
        asyncio.run(delete_streams(prefix))
