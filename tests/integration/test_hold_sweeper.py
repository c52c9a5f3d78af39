"""The expired-hold sweeper of availability-service: a hold left past its TTL (its booking-service
died, say) gives its nights back, is counted, and the sweep that expired it is traced."""

from __future__ import annotations

import time

import httpx

from conftest import start_stack
from support.booking import fresh_stay


def test_a_hold_past_its_ttl_is_expired_counted_and_traced(tmp_path):
    stack = start_stack(tmp_path, hold_sweep_interval_s=0.2)
    try:
        url = stack.url("availability-service")
        check_in, check_out = fresh_stay()
        hold = {
            "reservation_id": "rsv_sweeper_test",
            "property_id": "prop-00001",
            "room_id": "prop-00001-r001",
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "ttl_seconds": 0.5,
        }
        assert httpx.post(f"{url}/holds", json=hold).status_code == 201, "the hold was not placed"
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/holds/rsv_sweeper_test").json()["status"] != "expired":
            assert time.monotonic() < deadline, "the sweeper never expired the hold"
            time.sleep(0.1)
        # its nights are free again: the same room can be held for them at once
        again = {**hold, "reservation_id": "rsv_sweeper_next", "ttl_seconds": 60}
        assert httpx.post(f"{url}/holds", json=again).status_code == 201

        sweeps = [s for s in stack.spans() if s.name == "availability.expire_holds"]
        assert len(sweeps) == 1, "a sweep that expired nothing must leave no trace"
        sweep = sweeps[0]
        assert sweep.attributes["hold.expired_count"] == 1
        assert [(e.name, e.attributes["booking.reservation_id"]) for e in sweep.events] == [
            ("hold_expired", "rsv_sweeper_test")
        ]
        assert sweep.parent is None
        expired = stack.metric_points("availability-service", "booking.holds.expired")
        assert sum(p.value for p in expired) == 1
    finally:
        stack.stop()
