"""``bookline faults set | show | clear`` as a user runs them, and a crash point turned on under
``bookline up``: booking-service exits hard, ``bookline up`` starts it again, its recovery settles the
booking with the money consistent, and the trace in the local store shows where the process died."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from bookline.cli import app
from support.booking import APPROVE, Client
from support.up import bookline_up, wait_for

runner = CliRunner()


def faults(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """The real command, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "bookline", "faults", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_set_show_and_clear_through_the_command(tmp_path: Path):
    shown = faults("show", data_dir=tmp_path)
    assert shown.returncode == 0 and "no faults" in shown.stdout

    done = faults(
        "set", "gateway.decline_rate=0.2", "crash.after_authorize=0.02", "hold.ttl_seconds=5", data_dir=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert yaml.safe_load((tmp_path / "faults.yaml").read_text()) == {
        "gateway": {"decline_rate": 0.2},
        "hold": {"ttl_seconds": 5.0},
        "crash": {"after_authorize": 0.02},
    }
    shown = faults("show", data_dir=tmp_path)
    assert shown.returncode == 0
    for key, value in (("gateway.decline_rate", "0.2"), ("crash.after_authorize", "0.02"), ("hold.ttl_seconds", "5")):
        assert any(key in line and value in line for line in shown.stdout.splitlines()), shown.stdout

    unset = runner.invoke(
        app, ["faults", "set", "gateway.decline_rate=", "hold.ttl_seconds=none", "--data-dir", str(tmp_path)]
    )
    assert unset.exit_code == 0, unset.output
    assert yaml.safe_load((tmp_path / "faults.yaml").read_text()) == {"crash": {"after_authorize": 0.02}}

    cleared = faults("clear", data_dir=tmp_path)
    assert cleared.returncode == 0 and "no faults" in cleared.stdout
    assert "no faults" in faults("show", data_dir=tmp_path).stdout


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("gateway.decline_rate=1.5", "gateway.decline_rate"),
        ("gateway.decline_rate=lots", "gateway.decline_rate"),
        ("gateway.slowness=1", "gateway.slowness"),
        ("payments.decline_rate=0.1", "payments.decline_rate"),
        ("hold.ttl_seconds=0", "hold.ttl_seconds"),
        ("gateway.decline_rate", "gateway.decline_rate"),  # no '='
    ],
)
def test_a_bad_key_or_value_exits_2_naming_it_and_changes_nothing(tmp_path: Path, assignment: str, named: str):
    assert (
        runner.invoke(app, ["faults", "set", "queue.redelivery_rate=0.1", "--data-dir", str(tmp_path)]).exit_code == 0
    )
    before = (tmp_path / "faults.yaml").read_bytes()

    result = runner.invoke(app, ["faults", "set", "crash.after_hold=0.5", assignment, "--data-dir", str(tmp_path)])

    assert result.exit_code == 2, result.output
    assert "error" in result.output and named in result.output
    assert (tmp_path / "faults.yaml").read_bytes() == before  # not even the good assignment was applied


def test_show_reports_a_broken_file_and_how_to_recover(tmp_path: Path):
    (tmp_path / "faults.yaml").write_text("gateway: {decline_rate: 3}\n")
    result = runner.invoke(app, ["faults", "show", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "gateway.decline_rate" in result.output and "bookline faults clear" in result.output


@pytest.mark.stack
def test_a_crash_point_under_bookline_up_is_restarted_settled_and_visible_in_the_trace(tmp_path: Path):
    data_dir = tmp_path / "var"
    env = {"BOOKLINE_SAGA_STALE_AFTER_S": "1", "BOOKLINE_SAGA_RECOVERY_INTERVAL_S": "0.2"}
    with bookline_up(data_dir, env=env) as up:
        client = Client.for_stack(up)
        assert faults("set", "crash.after_authorize=1.0", data_dir=data_dir).returncode == 0
        body, key = client.body(), str(uuid.uuid4())
        with pytest.raises(httpx.TransportError):  # the process died mid-request
            client.book(body, key=key)

        wait_for(lambda: "starting it again (restart 1)" in up.output(), what="the restart of booking-service")
        assert faults("clear", data_dir=data_dir).returncode == 0  # so the stack recovers for good

        # the guest retries with the same key until recovery has settled the interrupted booking
        settled = wait_for(
            lambda: (r := client.book(body, key=key)).status_code != 409 and r,
            timeout=60,
            what="the interrupted booking settled by recovery",
        )
        # authorized, never confirmed: recovery rolls it back and gives the money back
        assert settled.status_code == 503, settled.text
        assert settled.json()["error"]["code"] == "booking_interrupted"
        booking_id = settled.json()["error"]["booking_id"]
        booking = client.get(f"/bookings/{booking_id}").json()
        assert booking["status"] == "failed"
        assert booking["payment"]["status"] == "voided"
        ledger = client.ledger(booking["reservation_id"])
        assert (ledger["authorized_minor"], ledger["captured_minor"], ledger["open_minor"]) == (
            booking["total_minor"], 0, 0,
        )  # fmt: skip

        # the trace shows where the process died: the crash event on booking.create, flushed before exit
        store = up.url("telemetry")

        def crashed_create() -> dict | None:
            r = httpx.get(f"{store}/api/traces/{booking['trace_id']}", timeout=5)
            spans = r.json()["spans"] if r.status_code == 200 else []
            return next((s for s in spans if s["name"] == "booking.create"), None)

        create = wait_for(crashed_create, what="booking.create of the crashed booking in the store")
        assert [e["attributes"] for e in create["events"] if e["name"] == "fault_injected"] == [
            {"fault.name": "crash.after_authorize"}
        ]
        assert create["status"]["code"] == "ERROR"
        crash_lines = [line for line in up.lines if "crash.after_authorize" in line]
        assert len(crash_lines) == 1, up.output()
        assert "after_authorize" in crash_lines[0] and APPROVE not in up.output()

        # with the fault cleared, the restarted service books normally
        assert client.book(client.body()).status_code == 201
        assert up.process.poll() is None, up.output()
