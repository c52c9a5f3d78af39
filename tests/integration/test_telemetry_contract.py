"""The spans, attributes, events and metrics of real bookings agree with telemetry-registry.yaml."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookline import http_tracing
from bookline.telemetry import HTTP_METRICS
from bookline.telemetry_contract import load_registry
from conftest import start_stack
from support.booking import DECLINE, GATEWAY_500, SLOW, Client, fresh_stay
from support.spans import ours, service_of

REGISTRY = load_registry()
SOURCE = Path(__file__).parents[2] / "src" / "bookline"
TYPES = {"string": str, "int": int, "double": (float, int), "boolean": bool}


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory):
    """Every kind of booking, once: the spans and metrics they leave behind."""
    stack = start_stack(tmp_path_factory.mktemp("contract"))
    client = Client.for_stack(stack)
    created = client.book(client.body()).json()
    client.cancel(created["booking_id"])
    for card in (DECLINE, GATEWAY_500, SLOW):
        client.book(client.body(card=card))
    client.book(client.body(property_id="prop-99999"))
    stay = fresh_stay(1)
    bodies = [client.body(stay=stay, room_id="prop-00001-r002", guests=1) for _ in range(8)]

    async def storm() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            await asyncio.gather(
                *(
                    http.post(
                        f"{client.booking_url}/bookings",
                        json=b,
                        headers={"Idempotency-Key": str(uuid.uuid4()), **client.auth(f"racer-{i}")},
                    )
                    for i, b in enumerate(bodies)
                )
            )

    asyncio.run(storm())
    asyncio.run(asyncio.sleep(1.0))  # let the notifications of the confirmed and cancelled booking land
    yield stack
    stack.stop()


def _type_ok(value: Any, declared: str) -> bool:
    if declared == "string[]":
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if declared == "int" and isinstance(value, bool):
        return False
    return isinstance(value, TYPES[declared])


def test_every_span_of_ours_is_declared_with_its_kind_service_and_attributes(traffic):
    spans = ours(traffic.spans())
    assert spans
    problems = []
    for span in spans:
        contract = REGISTRY["spans"].get(span.name)
        if contract is None:
            problems.append(f"undeclared span {span.name!r}")
            continue
        if span.kind.name != contract["kind"]:
            problems.append(f"{span.name}: kind {span.kind.name}, declared {contract['kind']}")
        if service_of(span) != contract["service"]:
            problems.append(f"{span.name}: emitted by {service_of(span)}, declared {contract['service']}")
        allowed = set(contract.get("required", [])) | set(contract.get("optional", []))
        for key, value in span.attributes.items():
            if key not in allowed:
                problems.append(f"{span.name}: undeclared attribute {key!r}")
            elif not _type_ok(value, REGISTRY["attributes"][key]["type"]):
                problems.append(f"{span.name}: {key}={value!r} is not {REGISTRY['attributes'][key]['type']}")
        for key in contract.get("required", []):
            if key not in span.attributes and not span.attributes.get("booking.idempotent_replay"):
                problems.append(f"{span.name}: required attribute {key!r} missing")
        for event in span.events:
            if event.name == "exception":
                continue
            if event.name not in contract.get("events", []):
                problems.append(f"{span.name}: undeclared event {event.name!r}")
                continue
            for key in event.attributes:
                if key not in REGISTRY["events"][event.name]:
                    problems.append(f"{span.name}/{event.name}: undeclared attribute {key!r}")
    assert not sorted(set(problems)), "\n".join(sorted(set(problems)))


def test_the_traffic_covers_the_booking_spans_of_the_contract(traffic):
    seen = {s.name for s in ours(traffic.spans())}
    booking_flow = {
        "booking.create",
        "booking.check_availability",
        "booking.price_quote",
        "booking.acquire_lock",
        "booking.process_payment",
        "booking.confirm",
        "booking.rollback",
        "booking.release_lock",
        "payment.void",
        "payment.refund",
        "booking.restore_inventory",
        "booking.confirmed publish",
        "booking.confirmed process",
        "notification.send_email",
        "booking.cancelled publish",
    }
    assert booking_flow <= seen, booking_flow - seen


def test_no_auto_instrumented_span_carries_a_custom_attribute(traffic):
    custom = re.compile(r"^(booking|payment|pricing|hold|availability|notification)\.")
    for span in traffic.spans():
        if span.instrumentation_scope.name == "bookline":
            continue
        assert not [k for k in span.attributes if custom.match(k)], span.name


def test_database_spans_are_one_per_transaction_and_name_the_service_database(traffic):
    spans = [s for s in traffic.spans() if s.instrumentation_scope.name == "bookline.db"]
    assert spans, "no database span in the traffic"
    assert all(re.fullmatch(r"transaction [a-z]+\.db", s.name) for s in spans), sorted({s.name for s in spans})
    # no statement spans unless BOOKLINE_TRACE_SQL_STATEMENTS asks for them
    assert not [s for s in traffic.spans() if s.instrumentation_scope.name.endswith("sqlalchemy")]
    for span in spans:
        attributes = span.attributes
        assert attributes["db.system.name"] == "sqlite" and attributes["db.namespace"] == span.name.split()[1]
        operations = attributes["db.transaction.operations"]
        assert attributes["db.transaction.statements"] == len(operations)
        assert set(operations) <= {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}, operations
    # a booking's writes are in its trace, under the spans of the steps that made them
    assert any("INSERT" in s.attributes["db.transaction.operations"] and s.parent is not None for s in spans)


def test_every_declared_name_is_still_in_the_code():
    code = "\n".join(p.read_text() for p in SOURCE.rglob("*.py"))
    for name in [*REGISTRY["spans"], *REGISTRY["metrics"], *REGISTRY["events"], *REGISTRY["attributes"]]:
        probe = name.split(" ")[-1] if name.endswith((" publish", " process")) else name
        if name in ("booking.status",):
            probe = '"booking.status"'
        assert probe in code or f'"{probe}"' in code, f"{name} is declared but nothing emits it"


def test_metrics_are_declared_with_their_attributes(traffic):
    seen = {}
    for service, reader in traffic.metric_readers.items():
        data = reader.get_metrics_data()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                if sm.scope.name != "bookline":
                    continue
                for metric in sm.metrics:
                    seen[metric.name] = (service, metric)
    expected = {
        "booking.attempts",
        "booking.duration_ms",
        "booking.lock.contentions",
        "booking.payment.outcomes",
        "booking.rollbacks",
        "notification.delivery_lag_ms",
    }
    assert expected <= set(seen), expected - set(seen)
    for name, (service, metric) in seen.items():
        contract = REGISTRY["metrics"].get(name)
        assert contract is not None, f"undeclared metric {name}"
        assert service == contract["service"]
        assert (metric.unit or "") == contract["unit"], name
        for point in metric.data.data_points:
            assert set(point.attributes) <= set(contract["attributes"]), (name, dict(point.attributes))


def test_the_http_instrumentations_record_their_durations_only(traffic):
    """The HTTP server and client duration histograms of TELEMETRY.md, from every service; the other
    instruments of the instrumentations (active requests, body sizes) record nothing."""
    names: dict[str, set[str]] = {}
    for service, reader in traffic.metric_readers.items():
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                if (
                    sm.scope.name.startswith("opentelemetry.instrumentation")
                    or sm.scope.name == http_tracing.SCOPE_NAME
                ):
                    names.setdefault(service, set()).update(m.name for m in sm.metrics)
    assert names["booking-service"] == HTTP_METRICS
    assert "http.server.request.duration" in names["payment-gateway"]
    assert set().union(*names.values()) == HTTP_METRICS
