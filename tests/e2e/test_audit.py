"""``bookline audit`` against ``bookline up`` as a user runs them: a confirmed, a declined and a
cancelled booking pass every check (the trace check included, read from the local telemetry store);
then invariants broken the way a bug would break them make the audit fail, naming the booking and
its trace."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bookline.config import SERVICES, TELEMETRY_STORE
from support.booking import DECLINE, Client, as_service
from support.up import RunningUp, bookline_up, up_env, wait_for

pytestmark = pytest.mark.stack

GRACE_S = 1.0


def audit(up: RunningUp, data_dir: Path, report: Path) -> tuple[int, str, dict[str, Any]]:
    """``bookline audit --data-dir DIR --json FILE`` in a process of its own, as a user runs it: the
    admin token comes from DIR/admin.token, which ``bookline up`` created."""
    ports = {s.key: urlsplit(up.url(s.name)).port for s in (*SERVICES, TELEMETRY_STORE)}
    env = up_env(ports, {"BOOKLINE_AUDIT_GRACE_S": str(GRACE_S)})
    done = subprocess.run(
        [sys.executable, "-m", "bookline", "audit", "--data-dir", str(data_dir), "--json", str(report)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr, json.loads(report.read_text())


def violations_of(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [v for v in report["violations"] if v["check"] == check]


def test_audit_passes_on_a_healthy_stack_and_names_the_booking_and_trace_of_each_broken_invariant(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "var"
    with bookline_up(data_dir) as up:
        token_file = data_dir / "admin.token"
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        admin = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        client = Client.for_stack(up)
        confirmed = client.book(client.body(), user="guest-ok").json()
        refusal = client.book(client.body(card=DECLINE), user="guest-declined").json()
        declined = {**refusal["error"], "trace_id": refusal["trace_id"]}
        cancelled = client.book(client.body(), user="guest-cancel").json()
        client.cancel(cancelled["booking_id"], user="guest-cancel").raise_for_status()

        def notified() -> bool:
            r = httpx.get(f"{up.url('notification-service')}/admin/notifications", headers=admin, timeout=5)
            return len(r.json()["notifications"]) == 3

        def compensations_stored() -> bool:
            r = httpx.get(f"{up.url('telemetry')}/admin/spans", headers=admin, timeout=5,
                          params={"name": ["booking.release_lock", "payment.void"]})  # fmt: skip
            mine = {s["name"] for s in r.json()["spans"]
                    if s["attributes"].get("booking.reservation_id") == declined["reservation_id"]}  # fmt: skip
            return mine == {"booking.release_lock", "payment.void"}

        wait_for(notified, timeout=30, what="the three notifications")
        wait_for(compensations_stored, timeout=30, what="the declined booking's compensation spans")
        time.sleep(GRACE_S + 0.5)  # every booking is settled, none in flight

        code, output, report = audit(up, data_dir, tmp_path / "healthy.json")

        assert code == 0, output
        assert {c["check"]: c["status"] for c in report["checks"]} == {
            "room_night_claimed_once": "pass",
            "confirmed_bookings_never_overlap": "pass",
            "expired_hold_not_counted": "pass",
            "money_balances": "pass",
            "no_open_authorization": "pass",
            "no_payment_left_unknown": "pass",
            "one_notification_per_kind": "pass",
            "compensations_traced": "pass",
            "no_card_numbers": "pass",
            "no_personal_data": "pass",
        }, output
        assert report["bookings"] == {"cancelled": 1, "confirmed": 1, "failed": 1}
        traced = next(c for c in report["checks"] if c["check"] == "compensations_traced")
        assert traced["checked"] == 1  # the declined booking, found in the store

        # a refund behind the saga's back, through the gateway's own API by someone holding booking-service's
        # key: the guest keeps the room for free
        auth_id = client.ledger(confirmed["reservation_id"])["authorizations"][0]["id"]
        insider = as_service(up.key_dir, "booking-service", "payment-gateway")
        httpx.post(
            f"{up.url('payment-gateway')}/v1/authorizations/{auth_id}/refund",
            headers={"Idempotency-Key": "not-bookline-1", **insider}, timeout=10,
        ).raise_for_status()  # fmt: skip
        code, output, report = audit(up, data_dir, tmp_path / "refunded.json")

        assert code == 1, output
        (money,) = violations_of(report, "money_balances")
        assert (money["booking_id"], money["trace_id"]) == (confirmed["booking_id"], confirmed["trace_id"])
        assert money["trace_url"] == f"{up.url('telemetry')}/traces/{confirmed['trace_id']}"
        assert f"booking {confirmed['booking_id']}" in output and confirmed["trace_id"] in output

        # a second e-mail row for a booking that failed, written straight into notification-service's log
        with sqlite3.connect(data_dir / "notification.db") as conn:
            conn.execute(
                "INSERT INTO sent_notifications (booking_id, kind, message_id, reservation_id, sent_at) "
                "VALUES (?, 'confirmed', 'forged', ?, ?)",
                (declined["booking_id"], declined["reservation_id"], time.time()),
            )
        code, output, report = audit(up, data_dir, tmp_path / "notified.json")

        assert code == 1, output
        (notice,) = violations_of(report, "one_notification_per_kind")
        assert notice["booking_id"] == declined["booking_id"]
        assert notice["trace_id"] == declined["trace_id"]
        assert notice["message"] == "a confirmed notification was sent for a failed booking"
        assert len(violations_of(report, "money_balances")) == 1
