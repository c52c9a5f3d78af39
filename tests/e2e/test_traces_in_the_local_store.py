"""Through ``bookline up`` as a user runs it: bookings end up as whole, true traces in the local
telemetry store, and its tail sampler keeps every failing trace and about a tenth of the rest."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import httpx
import pytest
import yaml

from bookline.load.guests import guest_of
from bookline.services.telemetry.sampling.config import PACKAGED_POLICY_FILE
from bookline.telemetry_contract import load_registry
from support.booking import DECLINE, Client, fresh_stay
from support.up import bookline_up, wait_for

pytestmark = pytest.mark.stack

KEEP_EVERYTHING = {"decision_wait": "1s", "num_traces": 10000, "policies": [{"name": "all", "type": "always_sample"}]}


def trace_of(store: str, trace_id: str) -> dict | None:
    r = httpx.get(f"{store}/api/traces/{trace_id}", timeout=5)
    return r.json() if r.status_code == 200 else None


def spans_named(trace: dict, name: str) -> list[dict]:
    return [s for s in trace["spans"] if s["name"] == name]


def one(trace: dict, name: str) -> dict:
    found = spans_named(trace, name)
    assert len(found) == 1, f"{len(found)} spans named {name}: {[s['name'] for s in trace['spans']]}"
    return found[0]


async def race_for_one_room(client: Client, racers: int) -> list[httpx.Response]:
    stay = fresh_stay(1)
    bodies = [
        client.body(stay=stay, property_id="prop-00002", room_id="prop-00002-r001", guests=1) for _ in range(racers)
    ]
    async with httpx.AsyncClient(timeout=60) as http:
        return await asyncio.gather(
            *(
                http.post(
                    f"{client.booking_url}/bookings",
                    json=b,
                    headers={"Idempotency-Key": str(uuid.uuid4()), **client.auth(f"racer-{i}")},
                )
                for i, b in enumerate(bodies)
            )
        )


def test_bookings_through_bookline_up_are_whole_traces_in_the_store(tmp_path: Path) -> None:
    policy = tmp_path / "keep-everything.yaml"
    policy.write_text(yaml.safe_dump(KEEP_EVERYTHING))
    with bookline_up(tmp_path / "var", env={"BOOKLINE_SAMPLING_POLICY_FILE": str(policy)}) as up:
        store = up.url("telemetry")
        client = Client.for_stack(up)
        confirmed = client.book(client.body(), user="guest-ok")
        declined = client.book(client.body(card=DECLINE), user="guest-declined")
        raced = asyncio.run(race_for_one_room(client, 8))

        assert confirmed.status_code == 201, confirmed.text
        booking = confirmed.json()
        # the answer links to the trace page of the local store, which serves the viewer
        assert booking["trace_url"] == f"{store}/traces/{booking['trace_id']}"
        assert httpx.get(booking["trace_url"], timeout=5).status_code == 200

        # each service exports on its own schedule, and the e-mail is sent asynchronously
        def whole_trace() -> dict | None:
            t = trace_of(store, booking["trace_id"])
            if (
                t
                and spans_named(t, "notification.send_email")
                and spans_named(t, "POST /bookings")
                and len({s["service"] for s in t["spans"]}) >= 6
            ):
                return t
            return None

        trace = wait_for(whole_trace, what="spans of six services and the e-mail span in the confirmed trace")
        spans = trace["spans"]
        by_id = {s["span_id"]: s for s in spans}
        roots = [s for s in spans if s["parent_span_id"] is None]
        assert [(r["name"], r["service"], r["kind"]) for r in roots] == [
            ("POST /bookings", "booking-service", "SERVER")
        ]
        assert all(s["parent_span_id"] in by_id for s in spans if s["parent_span_id"]), "a span's parent is missing"

        create = one(trace, "booking.create")
        assert by_id[create["parent_span_id"]]["name"] == "POST /bookings"
        assert create["attributes"]["booking.outcome"] == "confirmed"
        assert create["attributes"]["booking.confirmation_code"] == booking["confirmation_code"]
        for step in ("booking.check_availability", "booking.price_quote", "booking.acquire_lock",
                     "booking.process_payment", "booking.confirm"):  # fmt: skip
            assert one(trace, step)["parent_span_id"] == create["span_id"], step
        publish, process = one(trace, "booking.confirmed publish"), one(trace, "booking.confirmed process")
        assert (publish["service"], publish["kind"]) == ("confirmation-service", "PRODUCER")
        assert (process["service"], process["kind"]) == ("notification-service", "CONSUMER")
        assert process["parent_span_id"] == publish["span_id"]
        email = one(trace, "notification.send_email")
        assert email["parent_span_id"] == process["span_id"]

        # every attribute the contract requires, on every span it declares
        registry = load_registry()["spans"]
        for span in spans:
            declared = registry.get(span["name"])
            if declared:
                missing = set(declared.get("required", ())) - set(span["attributes"])
                assert not missing, f"{span['name']} lacks {missing}"
                assert span["kind"] == declared["kind"], span["name"]

        # the same trace as a waterfall in a 100-column terminal
        shown = subprocess.run(
            [sys.executable, "-m", "bookline", "traces", "show", booking["trace_id"], "--url", store],
            env={**os.environ, "COLUMNS": "100"}, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "booking.create" in shown.stdout and "notification.send_email" in shown.stdout
        assert booking["confirmation_code"] in shown.stdout
        assert max(len(line) for line in shown.stdout.splitlines()) <= 100

        # the declined card: an ERROR booking.create and the rollback under it
        assert declined.status_code == 402, declined.text
        failed = wait_for(
            lambda: (t := trace_of(store, declined.json()["trace_id"])) and spans_named(t, "booking.rollback") and t,
            what="the declined booking's rollback span",
        )
        create = one(failed, "booking.create")
        assert create["status"]["code"] == "ERROR"
        assert create["attributes"]["booking.outcome"] == "declined"
        payment = one(failed, "booking.process_payment")
        assert "payment_declined" in [e["name"] for e in payment["events"]]
        rollback = one(failed, "booking.rollback")
        assert rollback["parent_span_id"] == create["span_id"]
        undone = {s["name"] for s in failed["spans"] if s["parent_span_id"] == rollback["span_id"]}
        assert "booking.release_lock" in undone

        # the race: one winner, the others contended or unavailable, and their traces say so
        codes = Counter(r.status_code for r in raced)
        assert codes[201] == 1, codes
        for loser in (r.json() for r in raced if r.status_code == 409):
            t = wait_for(
                lambda loser=loser: (
                    (t := trace_of(store, loser["trace_id"])) and spans_named(t, "booking.create") and t
                ),
                what="a contended booking's trace",
            )
            outcome = one(t, "booking.create")["attributes"]["booking.outcome"]
            assert outcome == {"lock_contention": "contention", "unavailable": "unavailable"}[loser["error"]["code"]]

        # logs and metrics of the same run
        logs = wait_for(
            lambda: httpx.get(f"{store}/api/logs", params={"trace_id": booking["trace_id"]}).json()["logs"],
            what="a log line in the confirmed booking's trace",
        )
        assert all(line["trace_id"] == booking["trace_id"] for line in logs)
        names = wait_for(
            lambda: (
                {m["name"] for m in httpx.get(f"{store}/api/metrics").json()["metrics"]} >= {"booking.attempts"}
                and {m["name"] for m in httpx.get(f"{store}/api/metrics").json()["metrics"]}
            ),
            what="booking metrics in the store",
        )
        assert {"booking.attempts", "booking.duration_ms", "booking.payment.outcomes"} <= names


SUCCESSFUL = 300
FAILING = 15


async def book_many(client: Client, tokens: list[str], *, rooms: list[tuple[str, str]], last4: str) -> list[dict]:
    check_in = datetime.now(UTC).date() + timedelta(days=20)
    sem = asyncio.Semaphore(8)

    async def book(http: httpx.AsyncClient, token: str, prop: str, room: str, guest: str) -> dict:
        body = {
            "source": "api", "property_id": prop, "room_id": room, "guests": 1,
            "check_in": check_in.isoformat(), "check_out": (check_in + timedelta(days=1)).isoformat(),
            "guest": guest_of(guest),
            "payment": {"method": "card", "token": token, "card_last_four": last4},
        }  # fmt: skip
        async with sem:
            r = await http.post(
                f"{client.booking_url}/bookings",
                json=body,
                headers={"Idempotency-Key": str(uuid.uuid4()), **client.auth(guest)},
            )
        return {**r.json(), "http_status": r.status_code}

    async with httpx.AsyncClient(timeout=60) as http:
        # one guest per booking, as real traffic is (a guest's own bookings are rate limited)
        return await asyncio.gather(
            *(book(http, t, p, r, f"guest-{i}") for i, (t, (p, r)) in enumerate(zip(tokens, rooms, strict=True)))
        )


def test_the_default_tail_sampling_keeps_every_failing_trace_and_a_tenth_of_the_rest(tmp_path: Path) -> None:
    # the packaged policies, with a shorter decision wait so the test need not wait 10 s per trace
    default = yaml.safe_load(resources.files("bookline.services.telemetry").joinpath(PACKAGED_POLICY_FILE).read_text())
    default["decision_wait"] = "2s"
    policy = tmp_path / "default-policies.yaml"
    policy.write_text(yaml.safe_dump(default))
    properties, per_property = 17, 20
    with bookline_up(
        tmp_path / "var",
        env={"BOOKLINE_SAMPLING_POLICY_FILE": str(policy)},
        properties=properties,
        rooms_per_property=per_property,
    ) as up:
        store = up.url("telemetry")
        client = Client.for_stack(up)
        rooms = [(f"prop-{p:05d}", f"prop-{p:05d}-r{r:03d}") for p in range(1, properties + 1)
                 for r in range(1, per_property + 1)]  # fmt: skip
        good = [client.tokenize()["token"] for _ in range(SUCCESSFUL)]
        bad = [client.tokenize(DECLINE)["token"] for _ in range(FAILING)]
        successes = asyncio.run(book_many(client, good, rooms=rooms[:SUCCESSFUL], last4="4242"))
        failures = asyncio.run(book_many(client, bad, rooms=rooms[SUCCESSFUL : SUCCESSFUL + FAILING], last4="0002"))
        assert Counter(b["http_status"] for b in successes) == {201: SUCCESSFUL}
        assert Counter(b["http_status"] for b in failures) == {402: FAILING}

        # every trace decided: nothing pending once the last spans are older than the decision wait
        wait_for(
            lambda: (s := httpx.get(f"{store}/api/sampling").json())["pending"] == 0 and s["kept"] + s["dropped"] > 0,
            timeout=60,
            what="every trace decided",
        )
        for failure in failures:
            kept = trace_of(store, failure["trace_id"])
            assert kept is not None and kept["sampling"] == "kept", f"failing trace {failure['trace_id']} dropped"
            assert one(kept, "booking.rollback")
        kept = sum(trace_of(store, b["trace_id"]) is not None for b in successes)
        # binomial(300, 0.1): mean 30, sd 5.2; four standard deviations either side
        sd = math.sqrt(SUCCESSFUL * 0.1 * 0.9)
        assert SUCCESSFUL * 0.1 - 4 * sd <= kept <= SUCCESSFUL * 0.1 + 4 * sd, f"kept {kept} of {SUCCESSFUL}"
        counters = httpx.get(f"{store}/api/sampling").json()
        assert counters["dropped"] >= SUCCESSFUL - kept
