"""The expired-hold sweeper of availability-service: a hold left past its TTL (its booking-service
died, say) gives its nights back, is counted, and the sweep that expired it is traced."""

from __future__ import annotations

import time

import httpx

from bookline.domain.ids import new_reservation_id
from conftest import start_stack
from support.booking import as_service, fresh_stay


def test_a_hold_past_its_ttl_is_expired_counted_and_traced(tmp_path):
    stack = start_stack(tmp_path, hold_sweep_interval_s=0.2)
    try:
        url = stack.url("availability-service")
        auth = as_service(stack.key_dir, "booking-service", "availability-service")
        first, second = new_reservation_id(), new_reservation_id()
        check_in, check_out = fresh_stay()
        hold = {
            "reservation_id": first,
            "property_id": "prop-00001",
            "room_id": "prop-00001-r001",
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "ttl_seconds": 0.5,
        }
        assert httpx.post(f"{url}/holds", json=hold, headers=auth).status_code == 201, "the hold was not placed"
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/holds/{first}", headers=auth).json()["status"] != "expired":
            assert time.monotonic() < deadline, "the sweeper never expired the hold"
            time.sleep(0.1)
        # its nights are free again: the same room can be held for them at once
        again = {**hold, "reservation_id": second, "ttl_seconds": 60}
        assert httpx.post(f"{url}/holds", json=again, headers=auth).status_code == 201

        sweeps = [s for s in stack.spans() if s.name == "availability.expire_holds"]
        assert len(sweeps) == 1, "a sweep that expired nothing must leave no trace"
        sweep = sweeps[0]
        assert sweep.attributes["hold.expired_count"] == 1
        assert [(e.name, e.attributes["booking.reservation_id"]) for e in sweep.events] == [("hold_expired", first)]
        assert sweep.parent is None
        expired = stack.metric_points("availability-service", "booking.holds.expired")
        assert sum(p.value for p in expired) == 1
    finally:
        stack.stop()
