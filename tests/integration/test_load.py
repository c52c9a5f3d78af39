"""``bookline load`` and the Locust file against a real Bookline (every service on its own port,
real HTTP, real SQLite): bookings are made and confirmed, hot rooms are fought over, duplicate
submits get the stored answer back and create nothing, and no card number is ever shown or stored.
The control test turns idempotency off (a test-only setting) and the very same duplicates are then
seen as ``duplicate_mismatch``: the check can fail."""

from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bookline.auth.provision import provision_keys
from bookline.cli import app
from bookline.config import Settings
from bookline.load.options import TEST_CARDS
from conftest import start_stack
from support.booking import Client
from support.stack import free_ports

OUTCOME = re.compile(r"^(\d{3}( [a-z][a-z0-9_]*)?|transport_error|timeout|dropped|duplicate_mismatch)$")
# many bookings and duplicates, so that a three-second run surely has both
MIX = "search=30,book=45,cancel=5,duplicate=20"
ALL_CARDS = ",".join(f"{name}=1" for name in ("approve", "decline", "insufficient_funds"))


def run_load(stack, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        [
            "load",
            "--url",
            stack.url("booking-service"),
            "--gateway-url",
            stack.url("payment-gateway"),
            "--data-dir",
            str(stack.settings.data_dir),
            *args,
        ],  # fmt: skip
        env={"COLUMNS": "120"},
    )
    return result.exit_code, result.output


def support_staff(stack) -> Client:
    """Reads any booking: a token with the admin scope."""
    return Client.for_stack(stack)


def booking_rows(data_dir: Path) -> Counter[str]:
    conn = sqlite3.connect(data_dir / "booking.db")
    try:
        return Counter(status for (status,) in conn.execute("SELECT status FROM bookings"))
    finally:
        conn.close()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):
    """One load run of three seconds, at 20 arrivals a second, on a fresh stack."""
    data_dir = tmp_path_factory.mktemp("load")
    stack = start_stack(data_dir)
    try:
        report_file = data_dir / "load.json"
        code, output = run_load(
            stack, "--rate", "20", "--duration", "3s", "--hot-rooms", "2", "--mix", MIX,
            "--cards", ALL_CARDS, "--seed", "4", "--json", str(report_file),
        )  # fmt: skip
        yield stack, data_dir, code, output, report_file
    finally:
        stack.stop()


def test_a_run_completes_with_exit_0_and_prints_its_summary(loaded):
    _, _, code, output, _ = loaded
    assert code == 0, output
    assert "sent 60" in output  # the last state of the progress line
    for heading in ("operation", "p50 ms", "p95 ms", "p99 ms", "max ms", "outcomes", "bookings confirmed"):
        assert heading in output


def test_the_json_summary_has_the_documented_shape(loaded):
    *_, report_file = loaded
    report = json.loads(report_file.read_text())
    assert set(report) >= {"config", "duration_s", "operations", "dropped", "bookings"}
    assert report["config"]["rate"] == 20 and report["config"]["duration_s"] == 3
    assert report["duration_s"] >= 3
    assert set(report["operations"]) == {"search", "book", "cancel", "duplicate"}
    sent = 0
    for op in report["operations"].values():
        assert set(op) == {"count", "rate_per_s", "latency_ms", "outcomes"}
        assert set(op["latency_ms"]) == {"p50", "p95", "p99", "max"}
        assert all(OUTCOME.match(outcome) for outcome in op["outcomes"]), op["outcomes"]
        sent += sum(op["outcomes"].values())
    assert sent == 60  # every arrival is accounted for, sent or dropped
    assert report["dropped"] == 0
    assert report["operations"]["search"]["outcomes"].get("200", 0) > 0


def test_bookings_are_confirmed_and_the_service_agrees(loaded):
    stack, data_dir, _, _, report_file = loaded
    report = json.loads(report_file.read_text())
    confirmed, cancelled = report["bookings"]["confirmed"], report["bookings"]["cancelled"]
    assert confirmed
    assert len(set(confirmed)) == len(confirmed)
    assert set(cancelled) <= set(confirmed)
    book = report["operations"]["book"]["outcomes"]
    assert book.get("201", 0) > 0
    assert book.get("402 payment_declined", 0) > 0  # a third of the cards decline
    for booking_id in confirmed:
        booking = support_staff(stack).get(f"/bookings/{booking_id}", user="support", admin=True).json()
        assert booking["status"] == ("cancelled" if booking_id in cancelled else "confirmed"), booking


def test_hot_rooms_are_fought_over_and_never_booked_twice(loaded):
    stack, _, _, _, report_file = loaded
    report = json.loads(report_file.read_text())
    hot_rooms, hot_stay = report["inventory"]["hot_rooms"], report["inventory"]["hot_stay"]
    assert len(hot_rooms) == 2
    book = report["operations"]["book"]["outcomes"]
    duplicate = report["operations"]["duplicate"]["outcomes"]
    lost = sum(n for o, n in {**book, **duplicate}.items() if o in ("409 lock_contention", "409 unavailable"))
    assert lost > 0, book  # bookings lost the race for a hot room-night
    won, held = 0, Counter()
    for booking_id in report["bookings"]["confirmed"]:
        booking = support_staff(stack).get(f"/bookings/{booking_id}", user="support", admin=True).json()
        if booking["room_id"] in hot_rooms and booking["check_in"] == hot_stay["check_in"]:
            won += 1
            held[booking["room_id"]] += booking["status"] == "confirmed"
    assert won > 0, "no hot room was booked at all"
    assert max(held.values()) <= 1, held  # cancelled ones freed the nights for the next winner


def test_duplicate_submits_replay_the_answer_and_create_no_booking(loaded):
    _, data_dir, _, _, report_file = loaded
    report = json.loads(report_file.read_text())
    duplicate = report["operations"]["duplicate"]
    assert duplicate["count"] > 0
    assert "duplicate_mismatch" not in duplicate["outcomes"]
    rows = booking_rows(data_dir)
    # every booking the service holds as confirmed (or cancelled since) is one the run saw once
    assert rows["confirmed"] + rows["cancelled"] == len(report["bookings"]["confirmed"])


def test_the_bookings_are_dealt_over_a_pool_of_customers_under_their_rate_limit(loaded):
    _, data_dir, code, output, report_file = loaded
    report = json.loads(report_file.read_text())
    assert report["config"]["customers"] == 3 and "as 3 customers" in output  # 60 arrivals, one per 20
    conn = sqlite3.connect(data_dir / "booking.db")
    try:
        per_customer = Counter(user for (user,) in conn.execute("SELECT user_id FROM bookings"))
    finally:
        conn.close()
    assert len(per_customer) == 3 and all(user.startswith("load-") for user in per_customer), per_customer
    assert max(per_customer.values()) <= 20, per_customer  # the limit is 30 a minute: never reached
    assert not any(o.startswith("429") for op in report["operations"].values() for o in op["outcomes"])


def test_no_card_number_in_the_output_or_the_json(loaded):
    _, data_dir, _, output, report_file = loaded
    for number in TEST_CARDS.values():
        assert number not in output
        assert number not in report_file.read_text()


def test_with_idempotency_off_the_same_duplicates_are_seen_as_mismatches(tmp_path):
    stack = start_stack(tmp_path, unsafe_disable_idempotency=True)
    try:
        report_file = tmp_path / "load.json"
        code, output = run_load(
            stack, "--rate", "10", "--duration", "2s", "--mix", "book=1,duplicate=1", "--seed", "4",
            "--json", str(report_file),
        )  # fmt: skip
        assert code == 0, output
        report = json.loads(report_file.read_text())
        assert report["operations"]["duplicate"]["outcomes"].get("duplicate_mismatch", 0) > 0
        assert booking_rows(tmp_path)["confirmed"] == len(report["bookings"]["confirmed"])
    finally:
        stack.stop()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rate", "0", "--duration", "3s"], "--rate"),
        (["--rate", "5", "--duration", "soon"], "--duration"),
        (["--rate", "5", "--duration", "3s", "--mix", "search=50,teleport=50"], "--mix"),
        (["--rate", "5", "--duration", "3s", "--hot-share", "0.5"], "--hot-share"),
        (["--rate", "5", "--duration", "3s", "--concurrency", "0"], "--concurrency"),
        (["--rate", "5", "--duration", "3s", "--cards", "424242424=1"], "--cards"),
        (["--rate", "5", "--duration", "3s", "--json", "/nonexistent/dir/out.json"], "--json"),
        (["--duration", "3s"], "--rate"),
    ],
)
def test_bad_options_exit_2_with_a_message(args, says):
    result = CliRunner().invoke(app, ["load", "--url", "http://127.0.0.1:9", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output
    assert "424242424" not in result.output


def test_a_booking_service_that_does_not_answer_exits_1(tmp_path):
    (port,) = free_ports(1)
    provision_keys(Settings(data_dir=tmp_path))
    result = CliRunner().invoke(
        app,
        ["load", "--url", f"http://127.0.0.1:{port}", "--rate", "5", "--duration", "1s", "--data-dir", str(tmp_path)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1, result.output
    assert "does not answer" in result.output


def test_without_the_stacks_keys_the_load_says_where_to_find_them(tmp_path):
    result = CliRunner().invoke(
        app, ["load", "--rate", "5", "--duration", "1s", "--data-dir", str(tmp_path)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2, result.output
    assert str(tmp_path / "keys") in result.output.replace("\n", "")
    assert "--data-dir" in result.output and "bookline keys" in result.output and "Traceback" not in result.output


def test_the_locustfile_runs_the_same_mix_headless(tmp_path):
    # never import locust here: it monkey-patches the whole process with gevent
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (it comes with the test extra: make install)")
    stack = start_stack(tmp_path)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(Path(__file__).parents[2] / "deploy/locust/locustfile.py"),
             "--headless", "-u", "8", "-r", "8", "-t", "4s", "--only-summary", "--csv", str(tmp_path / "locust"),
             "--host", stack.url("booking-service"), "--gateway-url", stack.url("payment-gateway"),
             "--hot-rooms", "2", "--mix", MIX, "--cards", ALL_CARDS, "--data-dir", str(stack.settings.data_dir)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        stack.stop()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    stats = {row.split(",")[1]: row.split(",") for row in (tmp_path / "locust_stats.csv").read_text().splitlines()[1:]}
    for name in ("POST /v1/tokens", "POST /bookings", "GET /availability"):
        assert int(stats[name][2]) > 0, (name, stats.get(name))
        assert int(stats[name][3]) == 0, (name, stats.get(name))  # no failure
    # a 4 s run on a busy machine may end with no 201 among its few bookings: any booking outcome will do
    assert "Bookline outcomes" in output and re.search(r"^  book \d{3}", output, re.MULTILINE), output
    for number in TEST_CARDS.values():
        assert number not in output
    conn = sqlite3.connect(tmp_path / "booking.db")
    try:
        customers = {user for (user,) in conn.execute("SELECT user_id FROM bookings")}
    finally:
        conn.close()
    assert customers and all(user.startswith("locust-") for user in customers), customers


def test_the_locustfile_without_the_stacks_keys_stops_and_says_where_to_find_them(tmp_path):
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (it comes with the test extra: make install)")
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(Path(__file__).parents[2] / "deploy/locust/locustfile.py"),
         "--headless", "-u", "1", "-t", "1s", "--host", "http://127.0.0.1:9", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert str(tmp_path / "keys") in output and "--data-dir" in output and "bookline keys" in output, output
    assert "Traceback" not in output
