"""``bookline up`` starts a crashed booking-service again, and its saga recovery finishes the booking
that was interrupted: the guest who retries with the same Idempotency-Key gets the confirmed booking."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from support.booking import Client
from support.up import bookline_up, wait_for

pytestmark = pytest.mark.stack


def test_a_booking_service_that_crashed_after_confirming_is_restarted_and_completes_the_booking(
    tmp_path: Path,
) -> None:
    env = {
        "BOOKLINE_CRASH_AT": "after_confirm",  # exits hard between confirmation and capture
        "BOOKLINE_SAGA_STALE_AFTER_S": "1",
        "BOOKLINE_SAGA_RECOVERY_INTERVAL_S": "0.2",
        "OTEL_SDK_DISABLED": "true",
    }
    with bookline_up(tmp_path / "var", env=env) as up:
        client = Client.for_stack(up)
        body, key = client.body(), str(uuid.uuid4())
        with pytest.raises(httpx.HTTPError):
            client.book(body, key=key)

        wait_for(lambda: "starting it again (restart 1)" in up.output(), what="the restart of booking-service")
        replay = wait_for(
            lambda: (r := client.book(body, key=key)).status_code == 201 and r,
            timeout=60,
            what="the interrupted booking completed by recovery",
        )
        booking = replay.json()
        assert booking["status"] == "confirmed"
        ledger = client.ledger(booking["reservation_id"])
        assert ledger["captured_minor"] == booking["total_minor"]
        assert up.process.poll() is None, up.output()
