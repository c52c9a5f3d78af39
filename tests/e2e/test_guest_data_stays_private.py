"""A guest's name, e-mail address and phone number stay where they belong after a load run on
``bookline up``: every booking of ``bookline load`` carries a guest, and a careless client sends
guests' e-mail addresses and phone numbers in query strings. Afterwards no guest's name, address or
number is in the telemetry store, the queue, another service's database, the log of any service or
any error answer; only booking-service's and confirmation-service's databases hold them, and
``bookline audit`` (its check ``no_personal_data``) agrees.

The control runs the same with the redaction step off: the careless client's e-mail addresses and
phone numbers then reach the telemetry store, where the audit finds them. A name has no pattern a
redaction could know it by; the audit finds one by its stored value, shown by planting a guest's
name in a span."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bookline.config import SERVICES, TELEMETRY_STORE
from support.booking import Client, fresh_stay
from support.up import RunningUp, bookline_up, up_env

pytestmark = pytest.mark.stack


def bookline(up: RunningUp, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    ports = {s.key: urlsplit(up.url(s.name)).port for s in (*SERVICES, TELEMETRY_STORE)}
    env = up_env(ports, {"BOOKLINE_AUDIT_GRACE_S": "1", "COLUMNS": "160"})
    return subprocess.run([sys.executable, "-m", "bookline", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def stored_guests(data_dir: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(data_dir / "booking.db") as db:
        return db.execute("SELECT DISTINCT guest_name, guest_email, guest_phone FROM bookings").fetchall()


def careless_client(up: RunningUp, guests: list[tuple[str, str, str | None]], *, names: bool) -> list[httpx.Response]:
    """A client that puts guests' data where no API asks for it: query strings and headers (which
    the server spans record), and malformed guests (whose 422 must not repeat them)."""
    client = Client.for_stack(up)
    url = up.url("booking-service")
    answers = []
    for name, email, phone in guests[:3]:
        stay = fresh_stay()
        params = {"property_id": "prop-00001", "check_in": stay[0].isoformat(), "check_out": stay[1].isoformat(),
                  "guests": 1, "email": email, "phone": phone or ""}  # fmt: skip
        if names:
            params["guest"] = name
        answers.append(httpx.get(f"{url}/availability", params=params, timeout=30))
        answers.append(httpx.get(f"{url}/properties", params={"city": email}, timeout=30))
        bad = {"name": name, "email": email.replace("@", " at "), "phone": (phone or "+351912345678")[:-3]}
        answers.append(client.book(client.body(stay=stay, guest=bad)))
    return answers


def personal_data_violations(report: dict) -> list[dict]:
    return [v for v in report["violations"] if v["check"] == "no_personal_data"]


def run(tmp_path: Path, *, redaction: bool) -> tuple[RunningUp, dict, list, list[httpx.Response]]:
    data_dir = tmp_path / "var"
    env = {} if redaction else {"BOOKLINE_UNSAFE_DISABLE_REDACTION": "true"}
    with bookline_up(data_dir, env=env) as up:
        load = bookline(up, "load", "--rate", "20", "--duration", "6", "--mix", "book=60,search=25,cancel=15",
                        "--seed", "3", "--data-dir", str(data_dir), "--json", str(tmp_path / "load.json"))  # fmt: skip
        assert load.returncode == 0, load.stdout + load.stderr
        assert json.loads((tmp_path / "load.json").read_text())["bookings"]["confirmed"]
        guests = stored_guests(data_dir)
        answers = careless_client(up, guests, names=not redaction)
        time.sleep(3)  # every span and log line in the store, every e-mail sent
        audit = bookline(up, "audit", "--data-dir", str(data_dir), "--json", str(tmp_path / "audit.json"))
        assert audit.returncode in (0, 1), audit.stdout + audit.stderr  # 1: a violation was found
        report = json.loads((tmp_path / "audit.json").read_text())
        return up, report, guests, answers


def test_no_guest_data_outside_the_two_services_that_keep_it(tmp_path: Path):
    up, report, guests, answers = run(tmp_path, redaction=True)
    assert len(guests) >= 5, guests
    values = [v for guest in guests for v in guest if v]
    assert personal_data_violations(report) == [], report["violations"]
    check = next(c for c in report["checks"] if c["check"] == "no_personal_data")
    assert check["status"] == "pass" and check["checked"] > 0, check
    logs = up.output()
    assert not [v for v in values if v in logs]
    for answer in answers:
        assert answer.status_code in (200, 422), answer.text
        assert not [v for v in values if v in answer.text and answer.status_code == 422]
    data_dir = tmp_path / "var"
    for path in sorted(data_dir.glob("*.db")):
        if path.name in ("booking.db", "confirmation.db"):
            continue
        with sqlite3.connect(path) as db:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            dump = "\n".join(repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
        assert not [v for v in values if v in dump], path.name


def test_control_without_redaction_the_audit_finds_them_in_the_telemetry_store(tmp_path: Path):
    _up, report, guests, _answers = run(tmp_path, redaction=False)
    found = personal_data_violations(report)
    kinds = {v["message"].split(":")[0] for v in found if v.get("service") == TELEMETRY_STORE.name}
    assert {"email", "phone", "name"} <= kinds, found
