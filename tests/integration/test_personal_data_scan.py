"""The data scan (``POST /admin/data-scan``) of every service and of the telemetry store, over real
HTTP: a guest's name, e-mail address or phone number stored where it must not be is reported by kind
and place, never by value; the guest columns of booking-service and confirmation-service are skipped
where they are declared (and found without the declaration: the control); the names a scan is given
appear in no answer, span or log line, not even in a 422 (and the control shows what a model's 422
would have echoed); the telemetry store's scan finds a phone ingested with its redaction off and not
with it on."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, Field
from sqlalchemy import Date, Float, Integer, MetaData, String, create_engine

from bookline.adapters.db import Database
from bookline.adapters.queue import SqliteQueue
from bookline.config import SERVICES, Settings
from bookline.redaction import REDACTED
from bookline.services.booking.tables import metadata as booking_metadata
from bookline.services.common.admin import database_admin_router, mount_admin
from bookline.services.common.app import install_error_handlers
from bookline.services.common.data_scan import GUEST_COLUMNS
from bookline.services.confirmation.tables import metadata as confirmation_metadata
from bookline.services.telemetry.api import build_app as build_store
from bookline.telemetry import setup_telemetry
from conftest import start_stack
from support.booking import GUEST, Client
from support.otlp import INGEST, INGEST_TOKEN, kv
from support.serving import served

TOKEN = "data-scan-admin-token-7c41e0"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# a guest of these tests' own, planted by hand where no guest data may be
NAME, EMAIL, PHONE = "Marta Quintela", "marta.quintela@example.org", "+44 20 7946 0958"
SERVICE_NAMES = [s.name for s in SERVICES]
GUEST_SERVICES = ("booking-service", "confirmation-service")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = start_stack(tmp_path_factory.mktemp("data-scan"), admin_token=TOKEN)
    yield s
    s.stop()


def data_scan(url: str, names: list[str] | None = None, since: float | None = None) -> httpx.Response:
    body: dict[str, Any] = {"since": since, "names": names or []}
    return httpx.post(f"{url}/admin/data-scan", json=body, headers=AUTH, timeout=60)


def places(answer: httpx.Response) -> set[tuple[str, str, str, str]]:
    assert answer.status_code == 200, answer.text
    return {(h["kind"], h["table"], h["column"], h["row_key"]) for h in answer.json()["hits"]}


def holds_none_of(text: str, *values: str) -> bool:
    folded = text.casefold()
    return not [v for v in values if v.casefold() in folded or v.replace(" ", "") in text]


# ---- the services' databases and the queue --------------------------------------------------------


def test_a_stack_without_bookings_holds_no_personal_data(stack) -> None:
    for service in SERVICE_NAMES:
        answer = data_scan(stack.url(service), [NAME, GUEST["name"]])
        assert places(answer) == set(), service
    # the seeded inventory was looked through
    assert data_scan(stack.url("availability-service")).json()["rows_scanned"] > 0


def test_personal_data_planted_in_availability_is_reported_by_kind_and_place_never_by_value(stack) -> None:
    db = stack.settings.data_dir / "availability.db"
    url = stack.url("availability-service")
    with sqlite3.connect(db) as conn:  # the way a bug would: a guest's details in a free-text column
        (a, name_a), (b, name_b), (c, name_c) = conn.execute(
            "SELECT property_id, name FROM properties ORDER BY property_id LIMIT 3"
        ).fetchall()
        planted = {a: f"call {PHONE}", b: f"mail {EMAIL}", c: f"suite of {NAME.upper()}, late arrival"}
        for property_id, text in planted.items():
            conn.execute("UPDATE properties SET name = ? WHERE property_id = ?", (text, property_id))
    try:
        with_names = data_scan(url, [NAME])
        without_names = data_scan(url)
    finally:
        with sqlite3.connect(db) as conn:
            for property_id, name in ((a, name_a), (b, name_b), (c, name_c)):
                conn.execute("UPDATE properties SET name = ? WHERE property_id = ?", (name, property_id))

    assert places(with_names) == {
        ("phone", "properties", "name", a), ("email", "properties", "name", b), ("name", "properties", "name", c)
    }  # fmt: skip
    assert with_names.json()["rows_with_hits"] == 3 and with_names.json()["truncated"] is False
    assert holds_none_of(with_names.text, NAME, EMAIL, PHONE)
    # control: a name is found only when it is asked for (no pattern finds it)
    assert places(without_names) == {("phone", "properties", "name", a), ("email", "properties", "name", b)}
    # and the card scan, unchanged, sees none of it
    card = httpx.get(f"{url}/admin/card-scan", headers=AUTH, timeout=30).json()
    assert card["hits"] == [] and "rows_with_card" in card


async def _publish(path: Path, message_id: str, body: dict[str, Any]) -> None:
    queue = SqliteQueue(path, visibility_timeout_s=30)
    try:  # a topic no consumer takes: the message stays queued as it was published
        await queue.publish("test.personal-data", body, headers={}, message_id=message_id)
    finally:
        await queue.close()


def test_a_guest_in_a_queued_message_is_reported_by_notification_services_scan(stack) -> None:
    url = stack.url("notification-service")
    published = time.time()
    event = {"booking_id": "bk_planted", "guest": {"name": NAME, "email": EMAIL, "phone": PHONE}}
    asyncio.run(_publish(stack.settings.queue_path, "msg-personal-data", event))
    try:
        answer = data_scan(url, [NAME])
        later = data_scan(url, [NAME], since=published + 3600)
    finally:  # the stack is shared: the planted message goes
        with sqlite3.connect(stack.settings.queue_path) as conn:
            conn.execute("DELETE FROM messages WHERE message_id = 'msg-personal-data'")

    found = {(kind, table, column) for kind, table, column, _key in places(answer)}
    assert found == {("name", "queue.messages", "body"), ("email", "queue.messages", "body"),
                     ("phone", "queue.messages", "body")}  # fmt: skip
    assert holds_none_of(answer.text, NAME, EMAIL, PHONE)
    assert places(later) == set()  # published before since


# ---- the guest columns: skipped where declared, found anywhere else --------------------------------


def _value(column: Any, n: int) -> Any:
    if isinstance(column.type, Date):
        return date(2027, 3, 5)
    if isinstance(column.type, Integer):
        return n
    if isinstance(column.type, Float):
        return time.time()
    if isinstance(column.type, String):
        return f"{column.name}-{n}"
    return None


def _guest_row(path: Path, metadata: MetaData, n: int, **values: Any) -> str:
    """A row of ``metadata``'s ``bookings`` (every required column filled), with ``values``; its key."""
    table = metadata.tables["bookings"]
    engine = create_engine(f"sqlite:///{path}")
    try:
        metadata.create_all(engine)
        row = {c.name: _value(c, n) for c in table.columns if not c.nullable or c.primary_key}
        row.update(values)
        with engine.begin() as conn:
            conn.execute(table.insert(), row)
    finally:
        engine.dispose()
    return "/".join(str(row[c.name]) for c in table.primary_key.columns)


@pytest.mark.parametrize("metadata", [booking_metadata, confirmation_metadata], ids=GUEST_SERVICES)
async def test_the_guest_columns_are_skipped_where_declared_and_found_without_the_declaration(
    tmp_path: Path, metadata: MetaData
) -> None:
    path = tmp_path / "guests.db"
    key = _guest_row(path, metadata, 1, guest_name=NAME, guest_email=EMAIL, guest_phone=PHONE)
    # a guest's e-mail in any other column of the same table is still found
    other_column = next(c.name for c in metadata.tables["bookings"].columns
                        if isinstance(c.type, String) and not c.primary_key and not c.name.startswith("guest_"))  # fmt: skip
    stray = _guest_row(path, metadata, 2, **{other_column: f"cc {EMAIL}"})
    settings = Settings(data_dir=tmp_path, admin_token=TOKEN)
    db = Database(f"sqlite:///{path}")
    declared, undeclared = FastAPI(), FastAPI()
    for app, allowed in ((declared, GUEST_COLUMNS), (undeclared, frozenset())):
        install_error_handlers(app)
        mount_admin(app, database_admin_router(settings, db, metadata, "a guest service", allowed=allowed))
    try:
        async with served(declared) as declared_url, served(undeclared) as undeclared_url:
            skipped = await asyncio.to_thread(data_scan, declared_url, [NAME])
            control = await asyncio.to_thread(data_scan, undeclared_url, [NAME])
    finally:
        await db.dispose()

    assert places(skipped) == {("email", "bookings", other_column, stray)}
    assert places(control) == {
        ("name", "bookings", "guest_name", key), ("email", "bookings", "guest_email", key),
        ("phone", "bookings", "guest_phone", key), ("email", "bookings", other_column, stray),
    }  # fmt: skip
    assert holds_none_of(skipped.text + control.text, NAME, EMAIL, PHONE)


def test_an_allow_list_naming_a_column_that_is_not_there_is_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, admin_token=TOKEN)
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ValueError, match="bookings.guest_nickname"):
        database_admin_router(
            settings, db, booking_metadata, "booking-service", allowed={("bookings", "guest_nickname")}
        )


def _book_one(stack: Any) -> dict[str, Any]:
    client = Client.for_stack(stack)
    answer = client.book(client.body(guest={"name": NAME, "email": EMAIL, "phone": PHONE.replace(" ", "")}))
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def booked(stack) -> dict[str, Any]:
    """A confirmed booking of the planted guest, and its notification delivered."""
    made = _book_one(stack)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = httpx.get(stack.url("notification-service") + "/admin/notifications", headers=AUTH, timeout=10)
        if made["booking_id"] in {n["booking_id"] for n in r.json()["notifications"]}:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the confirmation was not notified in time")
    return made


def test_after_a_real_booking_no_other_service_stores_the_guests_details(stack, booked) -> None:
    for service in SERVICE_NAMES:
        if service in GUEST_SERVICES:
            continue
        answer = data_scan(stack.url(service), [NAME])
        assert places(answer) == set(), (service, answer.text)
    for service in GUEST_SERVICES:  # nothing outside their guest columns (whether they declare them or not)
        answer = data_scan(stack.url(service), [NAME])
        assert {(t, c) for _k, t, c, _r in places(answer)} <= GUEST_COLUMNS, (service, answer.text)


def test_booking_and_confirmation_service_declare_their_guest_columns(stack, booked) -> None:
    for service in GUEST_SERVICES:
        assert places(data_scan(stack.url(service), [NAME])) == set(), service


# ---- the names a scan is given: in no answer, span or log line ---------------------------------------

LONG = f"{NAME} " + "x" * 200  # over 200 characters
BAD_BODIES = {
    "name too long": {"names": [NAME, LONG]},
    "too many names": {"names": [NAME] + ["ab"] * 10_000},
    "names not a list": {"names": NAME},
    "a name not a string": {"names": [NAME, 5]},
    "since not a number": {"since": NAME, "names": [NAME]},
    "since a boolean": {"since": True, "names": [NAME]},
    "since negative": {"since": -1, "names": [NAME]},
    "not an object": [NAME],
}


@pytest.mark.parametrize("service", ["availability-service", "notification-service"])
def test_a_bad_scan_request_answers_a_fixed_message_that_echoes_no_name(stack, service, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{stack.url(service)}/admin/data-scan"
    answers = {case: httpx.post(url, json=body, headers=AUTH, timeout=30) for case, body in BAD_BODIES.items()}
    answers["not JSON"] = httpx.post(url, content=f'{{"names": ["{NAME}"', headers=AUTH, timeout=30)

    for case, answer in answers.items():
        assert answer.status_code == (400 if case == "not JSON" else 422), (case, answer.text)
        assert answer.json()["error"]["code"] in ("validation_error", "malformed_json")
        assert holds_none_of(answer.text, NAME, "Quintela"), (case, answer.text)
    assert not [r for r in caplog.records if "quintela" in r.getMessage().casefold()]
    spans = json.dumps([{"name": s.name, "attributes": dict(s.attributes or {}),
                         "events": [dict(e.attributes or {}) for e in s.events]} for s in stack.spans()],
                       default=str)  # fmt: skip
    assert "/admin/data-scan" in spans and "quintela" not in spans.casefold()


class ModelBody(BaseModel):
    """The data scan's body as a model would check it (what ``scan_request`` does not do)."""

    names: list[str] = Field(default_factory=list, max_length=10_000)
    since: float | None = None


async def test_control_a_models_422_under_fastapis_own_handler_would_have_echoed_the_name() -> None:
    app = FastAPI()

    @app.post("/admin/data-scan")
    async def scan(body: ModelBody) -> dict[str, Any]:
        return {}

    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        echoed = await http.post("/admin/data-scan", json={"names": [NAME, 5], "since": NAME})

    assert echoed.status_code == 422 and NAME in echoed.text  # what scan_request's own checks prevent


def test_the_data_scan_needs_the_admin_token_on_every_service(stack) -> None:
    for service in SERVICE_NAMES:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = httpx.post(f"{stack.url(service)}/admin/data-scan", json={"names": [NAME]}, headers=headers, timeout=10)
            assert r.status_code == 401 and r.json()["error"]["code"] == "admin_unauthorized", (service, r.text)
            assert NAME not in r.text and TOKEN not in r.text


# ---- the telemetry store --------------------------------------------------------------------------

KEEP_ALL = "decision_wait: 1s\npolicies:\n  - {name: all, type: always_sample}\n"


def _careless_spans() -> ExportTraceServiceRequest:
    """A span from a sender with no redaction in front of its exporter, holding a guest's details."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend([kv("service.name", "careless-sender")])
    now = time.time_ns()
    span = resource.scope_spans.add().spans.add(
        trace_id=bytes.fromhex("5b8aa5a2d2c872e8321cf37308d69df2"), span_id=bytes.fromhex("051581bf3cb55c13"),
        name="guest.update", start_time_unix_nano=now - 1000, end_time_unix_nano=now,
    )  # fmt: skip
    span.attributes.extend([kv("guest.phone", PHONE), kv("note", f"for {NAME}, {EMAIL}")])
    return request


@pytest.mark.parametrize("redaction", ["on", "off"])
async def test_the_stores_scan_finds_a_phone_ingested_without_redaction_and_not_with_it(
    tmp_path: Path, redaction: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(KEEP_ALL)
    settings = Settings(
        data_dir=tmp_path, sampling_policy_file=policy, telemetry_ingest_token=INGEST_TOKEN, admin_token=TOKEN,
        unsafe_disable_redaction=redaction == "off",
    )  # fmt: skip
    async with served(build_store(settings, setup_telemetry("telemetry", settings, export=False))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            sent = await http.post("/v1/traces", content=_careless_spans().SerializeToString(),
                                   headers={**INGEST, "content-type": "application/x-protobuf"})  # fmt: skip
            assert sent.status_code == 200, sent.text
            deadline = time.monotonic() + 10
            while True:
                scan = await http.post("/admin/data-scan", json={"since": None, "names": [NAME]}, headers=AUTH)
                assert scan.status_code == 200, scan.text
                if scan.json()["rows_scanned"] or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            bad = await http.post("/admin/data-scan", json={"names": [LONG]}, headers=AUTH)

    found = {(h["kind"], h["table"], h["column"]) for h in scan.json()["hits"]}
    if redaction == "off":  # the control: what the store's redaction keeps out
        assert {("phone", "spans", "attributes"), ("email", "spans", "attributes")} <= found
    else:
        assert not [kind for kind, _table, _column in found if kind in ("phone", "email")]
        assert REDACTED in stored_text(tmp_path) and "7946" not in stored_text(tmp_path)
    # a name has no pattern to redact it by: the scan is what finds it, either way
    assert ("name", "spans", "attributes") in found
    assert holds_none_of(scan.text, NAME, EMAIL, PHONE)
    assert bad.status_code == 422 and holds_none_of(bad.text, NAME)


def stored_text(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / "telemetry.db") as conn:
        return "\n".join(repr(r) for r in conn.execute("SELECT name, attributes FROM spans"))


# ---- a service's own spans ------------------------------------------------------------------------


@pytest.mark.parametrize("redaction", ["on", "off"])
def test_a_services_span_loses_the_guests_phone_and_email_before_export(tmp_path: Path, redaction: str) -> None:
    settings = Settings(data_dir=tmp_path, unsafe_disable_redaction=redaction == "off")
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("booking-service", settings, span_exporter=exporter)
    with telemetry.tracer.start_as_current_span("booking.create") as span:
        span.set_attribute("note", f"guest {EMAIL} at {PHONE}")
        span.set_attribute("url.query", f"email={EMAIL}&tel=%2B442079460958")
    telemetry.shutdown()

    (exported,) = exporter.get_finished_spans()
    if redaction == "off":  # the control: the exporter's redaction is what removes them
        assert exported.attributes["note"] == f"guest {EMAIL} at {PHONE}"
    else:
        assert exported.attributes["note"] == f"guest {REDACTED} at {REDACTED}"
        assert exported.attributes["url.query"] == f"email={REDACTED}&tel={REDACTED}"
