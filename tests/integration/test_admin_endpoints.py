"""The read-only admin endpoints of every service (and of the telemetry store) over real HTTP: the
token guard (401, 403), what they return after real bookings, paging, the card scan, the token kept
out of spans and logs, and ``bookline audit`` run against them."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from bookline.auth.provision import provision_keys
from bookline.cli import app as cli_app
from bookline.config import Settings
from bookline.services.gateway.api import build_app as build_gateway
from bookline.services.telemetry.api import build_app as build_store
from bookline.telemetry import setup_telemetry
from conftest import start_stack
from support.booking import DECLINE, Client, as_service
from support.serving import served
from support.stack import InProcessStack, free_ports

TOKEN = "admin-token-for-tests-3f9c1e7d5b"
CARD = "4242424242424242"
ADMIN_PATHS = {
    "booking-service": ["/admin/bookings", "/admin/card-scan"],
    "availability-service": ["/admin/holds", "/admin/claims", "/admin/card-scan"],
    "pricing-engine": ["/admin/card-scan"],
    "confirmation-service": ["/admin/bookings", "/admin/card-scan"],
    "payment-gateway": ["/admin/authorizations", "/admin/card-scan"],
    "notification-service": ["/admin/notifications", "/admin/mail", "/admin/card-scan"],
}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def admin_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessStack]:
    stack = start_stack(tmp_path_factory.mktemp("admin"), admin_token=TOKEN)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def made(admin_stack: InProcessStack) -> dict[str, Any]:
    """A confirmed booking, a declined one and a cancelled one; their notifications delivered."""
    client = Client.for_stack(admin_stack)
    confirmed = client.book(client.body(), user="guest-ok").json()
    declined = client.book(client.body(card=DECLINE), user="guest-declined").json()["error"]
    cancelled = client.book(client.body(), user="guest-cancel").json()
    client.cancel(cancelled["booking_id"], user="guest-cancel").raise_for_status()
    wanted = {(confirmed["booking_id"], "confirmed"), (cancelled["booking_id"], "confirmed"),
              (cancelled["booking_id"], "cancelled")}  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sent = admin(admin_stack, "notification-service", "/admin/notifications")["notifications"]
        if wanted <= {(n["booking_id"], n["kind"]) for n in sent}:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the notifications were not sent in time")
    return {"confirmed": confirmed, "declined": declined, "cancelled": cancelled}


def admin(stack: InProcessStack, service: str, path: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(stack.url(service) + path, params=params, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": "Bearer"}, {"Authorization": TOKEN}],
    ids=["none", "wrong", "other-scheme", "empty", "no-scheme"],
)  # fmt: skip
def test_every_admin_endpoint_answers_401_without_the_right_bearer_token(admin_stack, headers) -> None:
    for service, paths in ADMIN_PATHS.items():
        for path in paths:
            r = httpx.get(admin_stack.url(service) + path, headers=headers, timeout=10)
            assert r.status_code == 401, (service, path, r.text)
            assert r.json()["error"]["code"] == "admin_unauthorized"
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in r.text


async def test_a_service_without_an_admin_token_answers_403_admin_disabled(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    async with served(build_gateway(settings, setup_telemetry("payment-gateway", settings))) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(f"{url}/admin/authorizations", headers=AUTH)

    assert r.status_code == 403
    assert r.json()["error"]["code"] == "admin_disabled"


def test_the_admin_endpoints_are_not_in_the_openapi_schema(admin_stack) -> None:
    for service in ADMIN_PATHS:
        schema = httpx.get(admin_stack.url(service) + "/openapi.json", timeout=10).json()
        assert not [p for p in schema["paths"] if p.startswith("/admin")], service


def test_booking_service_lists_every_booking_with_its_saga_steps_and_trace(admin_stack, made) -> None:
    listed = {b["booking_id"]: b for b in admin(admin_stack, "booking-service", "/admin/bookings")["bookings"]}

    confirmed = listed[made["confirmed"]["booking_id"]]
    assert confirmed["status"] == "confirmed" and confirmed["outcome"] == "confirmed"
    assert confirmed["trace_id"] == made["confirmed"]["trace_id"]
    assert confirmed["total_minor"] == made["confirmed"]["total_minor"]
    assert confirmed["steps"] == {"hold": "done", "authorize": "done", "confirm": "done", "capture": "done"}
    assert set(confirmed["steps_updated_at"]) == set(confirmed["steps"])
    declined = listed[made["declined"]["booking_id"]]
    assert (declined["status"], declined["failure_code"]) == ("failed", "payment_declined")
    assert declined["steps"] == {"hold": "compensated", "authorize": "compensated"}
    assert listed[made["cancelled"]["booking_id"]]["steps"]["refund"] == "done"


def test_since_and_reservation_filters_narrow_the_bookings(admin_stack, made) -> None:
    assert admin(admin_stack, "booking-service", "/admin/bookings", since=time.time() + 3600)["bookings"] == []
    rsv = made["declined"]["reservation_id"]
    found = admin(admin_stack, "booking-service", "/admin/bookings", reservation_id=[rsv])["bookings"]
    assert [b["reservation_id"] for b in found] == [rsv]


def test_availability_lists_holds_and_the_booked_nights_of_a_confirmed_booking(admin_stack, made) -> None:
    holds = {h["reservation_id"]: h for h in admin(admin_stack, "availability-service", "/admin/holds")["holds"]}
    claims = admin(admin_stack, "availability-service", "/admin/claims")["claims"]

    rsv = made["confirmed"]["reservation_id"]
    assert holds[rsv]["status"] == "committed" and holds[rsv]["updated_at"] <= holds[rsv]["expires_at"]
    assert holds[made["declined"]["reservation_id"]]["status"] == "released"
    assert holds[made["cancelled"]["reservation_id"]]["status"] == "released"
    mine = [c for c in claims if c["reservation_id"] == rsv]
    assert len(mine) == holds[rsv]["nights"] and {c["kind"] for c in mine} == {"booked"}
    assert not [c for c in claims if c["reservation_id"] == made["cancelled"]["reservation_id"]]


def test_confirmation_and_the_gateway_ledger_agree_with_the_bookings(admin_stack, made) -> None:
    confirmed = {b["booking_id"]: b for b in admin(admin_stack, "confirmation-service", "/admin/bookings")["bookings"]}
    ledger = {
        a["reservation_id"]: a for a in admin(admin_stack, "payment-gateway", "/admin/authorizations")["authorizations"]
    }

    assert confirmed[made["confirmed"]["booking_id"]]["cancelled"] is False
    assert confirmed[made["cancelled"]["booking_id"]]["cancelled"] is True
    assert made["declined"]["booking_id"] not in confirmed
    paid = ledger[made["confirmed"]["reservation_id"]]
    assert (paid["status"], paid["captured_minor"], paid["refunded_minor"]) == (
        "captured", made["confirmed"]["total_minor"], 0)  # fmt: skip
    assert ledger[made["cancelled"]["reservation_id"]]["status"] == "refunded"
    assert ledger[made["declined"]["reservation_id"]]["status"] == "declined"
    assert paid["idempotency_key"] == f"auth-{made['confirmed']['reservation_id']}"


def test_notification_service_lists_what_was_sent_and_the_emails_on_disk(admin_stack, made) -> None:
    sent = admin(admin_stack, "notification-service", "/admin/notifications")["notifications"]
    mail = admin(admin_stack, "notification-service", "/admin/mail")["mail"]

    expected = {(made["confirmed"]["booking_id"], "confirmed"), (made["cancelled"]["booking_id"], "confirmed"),
                (made["cancelled"]["booking_id"], "cancelled")}  # fmt: skip
    assert {(n["booking_id"], n["kind"]) for n in sent} == expected
    assert all({"booking_id", "kind", "message_id", "sent_at"} <= n.keys() for n in sent)
    assert {(m["booking_id"], m["kind"]) for m in mail} == expected


def test_a_list_is_paged_by_cursor_to_the_same_rows(admin_stack, made) -> None:
    whole = admin(admin_stack, "availability-service", "/admin/claims")
    assert whole["next"] is None and len(whole["claims"]) >= 2
    paged, params = [], {"limit": 1}
    while True:
        page = admin(admin_stack, "availability-service", "/admin/claims", **params)
        assert len(page["claims"]) <= 1
        paged.extend(page["claims"])
        if not page["next"]:
            break
        params["after"] = page["next"]

    assert paged == whole["claims"]
    r = httpx.get(admin_stack.url("availability-service") + "/admin/claims", params={"after": "garbage"}, headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_cursor")


def test_the_card_scan_names_where_a_card_number_is_stored_never_the_number(admin_stack, made) -> None:
    for service in ADMIN_PATHS:
        assert admin(admin_stack, service, "/admin/card-scan")["hits"] == [], service
    db = admin_stack.settings.data_dir / "booking.db"
    booking_id = made["confirmed"]["booking_id"]
    grouped = f"{CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:]}"
    with sqlite3.connect(db) as conn:  # the way a bug would: a card number in a free-text column
        conn.execute("UPDATE bookings SET user_id = ? WHERE booking_id = ?", (f"card {grouped}", booking_id))
    try:
        r = httpx.get(admin_stack.url("booking-service") + "/admin/card-scan", headers=AUTH, timeout=30)
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE bookings SET user_id = 'guest-ok' WHERE booking_id = ?", (booking_id,))

    assert r.json()["hits"] == [{"table": "bookings", "column": "user_id", "row_key": booking_id}]
    assert CARD not in r.text and grouped not in r.text


def test_the_card_scan_finds_a_card_joined_to_a_word_and_honours_since(admin_stack, made) -> None:
    db = admin_stack.settings.data_dir / "booking.db"
    booking_id = made["confirmed"]["booking_id"]
    url = admin_stack.url("booking-service") + "/admin/card-scan"
    with sqlite3.connect(db) as conn:  # written long ago (updated_at 1000), a card glued to an id
        row = conn.execute("SELECT user_id, updated_at FROM bookings WHERE booking_id = ?", (booking_id,)).fetchone()
        conn.execute(
            "UPDATE bookings SET user_id = ?, updated_at = 1000 WHERE booking_id = ?", (f"u-{CARD}", booking_id)
        )
    try:
        everything = httpx.get(url, headers=AUTH, timeout=30).json()
        recent = httpx.get(url, params={"since": time.time() - 3600}, headers=AUTH, timeout=30).json()
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE bookings SET user_id = ?, updated_at = ? WHERE booking_id = ?", (*row, booking_id))

    assert everything["hits"] == [{"table": "bookings", "column": "user_id", "row_key": booking_id}]
    assert recent["hits"] == [] and recent["rows_scanned"] < everything["rows_scanned"]


def test_a_table_without_a_time_column_is_scanned_whole_whatever_since_says(admin_stack, made) -> None:
    db = admin_stack.settings.data_dir / "availability.db"
    url = admin_stack.url("availability-service") + "/admin/card-scan"
    with sqlite3.connect(db) as conn:  # properties say nothing of when they were written
        property_id, name = conn.execute("SELECT property_id, name FROM properties ORDER BY property_id").fetchone()
        conn.execute("UPDATE properties SET name = ? WHERE property_id = ?", ("x4000056655665556", property_id))
    try:
        later = httpx.get(url, params={"since": time.time() + 3600}, headers=AUTH, timeout=30).json()
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE properties SET name = ? WHERE property_id = ?", (name, property_id))

    assert later["hits"] == [{"table": "properties", "column": "name", "row_key": property_id}]


def test_the_admin_token_is_in_no_span_and_no_log_line(admin_stack, made, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for service, paths in ADMIN_PATHS.items():
        for path in paths:
            admin(admin_stack, service, path)
        httpx.get(admin_stack.url(service) + paths[0], headers={"Authorization": "Bearer wrong"}, timeout=10)

    spans = admin_stack.spans()
    admin_spans = [s for s in spans if str(s.attributes.get("url.path", "")).startswith("/admin")]
    assert admin_spans, "the admin requests are traced like any request"
    for span in spans:
        dumped = json.dumps({"name": span.name, "attributes": dict(span.attributes),
                             "events": [dict(e.attributes or {}) for e in span.events]}, default=str)  # fmt: skip
        assert TOKEN not in dumped and "Bearer" not in dumped, span.name
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]


async def test_a_user_who_records_request_headers_still_gets_no_token_in_a_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    settings = Settings(data_dir=tmp_path, admin_token=TOKEN)
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("payment-gateway", settings, span_exporter=exporter)
    async with served(build_gateway(settings, telemetry)) as url:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(f"{url}/admin/authorizations", headers={**AUTH, "X-Probe": "seen"})
    telemetry.shutdown()

    assert r.status_code == 200
    (server,) = [s for s in exporter.get_finished_spans() if s.attributes.get("url.path") == "/admin/authorizations"]
    assert server.attributes["http.request.header.x_probe"] == ("seen",)  # headers are recorded...
    assert server.attributes["http.request.header.authorization"] == ("[REDACTED]",)  # ...but not the token


# ---- bookline audit against the stack ------------------------------------------------------------


def audit_env(stack: InProcessStack, **changes: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        f"BOOKLINE_{key.upper()}_PORT": str(stack.settings.port_of(key)) for key in
        ("booking", "availability", "pricing", "confirmation", "gateway", "notification")
    }  # fmt: skip
    env |= {
        # no telemetry store in this stack: a free port where nothing answers
        "BOOKLINE_TELEMETRY_PORT": str(free_ports(1)[0]),
        "BOOKLINE_ADMIN_TOKEN": TOKEN,
        "BOOKLINE_AUDIT_GRACE_S": "0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": None,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": None,
        "OTEL_SDK_DISABLED": None,
    }
    return env | changes


def test_bookline_audit_passes_on_the_stack_and_skips_the_trace_check_without_a_store(
    admin_stack, made, tmp_path
) -> None:
    report = tmp_path / "audit.json"
    result = CliRunner().invoke(cli_app, ["audit", "--json", str(report)], env=audit_env(admin_stack))

    assert result.exit_code == 0, result.output
    body = json.loads(report.read_text())
    statuses = {c["check"]: c["status"] for c in body["checks"]}
    assert statuses.pop("compensations_traced") == "skipped"
    assert set(statuses.values()) == {"pass"}
    assert body["bookings"] == {"cancelled": 1, "confirmed": 1, "failed": 1}
    skipped = next(c for c in body["checks"] if c["check"] == "compensations_traced")["skipped"]
    assert skipped.startswith("the telemetry store does not answer at http://127.0.0.1:")
    assert TOKEN not in result.output


def test_bookline_audit_since_a_time_judges_later_bookings_and_knows_the_money_of_earlier_ones(
    admin_stack, made, tmp_path
) -> None:
    listed = admin(admin_stack, "booking-service", "/admin/bookings")["bookings"]
    first = next(b for b in listed if b["booking_id"] == made["confirmed"]["booking_id"])
    # just after the first booking was created: its authorization (made later) is in the window, it is not
    since = first["created_at"] + 1e-4
    report = tmp_path / "since.json"

    result = CliRunner().invoke(
        cli_app, ["audit", "--since", repr(since), "--json", str(report)], env=audit_env(admin_stack)
    )

    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["bookings"] == {"cancelled": 1, "failed": 1}


def test_bookline_audit_exits_2_naming_a_service_it_cannot_read(admin_stack, made) -> None:
    down = CliRunner().invoke(
        cli_app, ["audit"], env=audit_env(admin_stack, BOOKLINE_GATEWAY_PORT=str(free_ports(1)[0]))
    )
    refused = CliRunner().invoke(cli_app, ["audit"], env=audit_env(admin_stack, BOOKLINE_ADMIN_TOKEN="wrong-token"))
    bad = CliRunner().invoke(cli_app, ["audit", "--since", "last tuesday"], env=audit_env(admin_stack))

    assert down.exit_code == 2 and "cannot read payment-gateway: does not answer at" in down.output
    assert refused.exit_code == 2 and "cannot read booking-service: refused the admin token" in refused.output
    assert "wrong-token" not in refused.output
    assert bad.exit_code == 2 and "--since" in bad.output


# ---- the telemetry store ------------------------------------------------------------------------

KEEP_ALL = "decision_wait: 1s\nnum_traces: 1000\npolicies:\n  - {name: all, type: always_sample}\n"


def export_compensation_trace(url: str, key_dir: Path) -> str:
    """A recovery trace as booking-service would send it, and one careless span with a card number."""
    provider = TracerProvider(resource=Resource.create({"service.name": "booking-service"}))
    # sent as booking-service would send it: with its service credential
    headers = as_service(key_dir, "booking-service", "telemetry")
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=headers)))
    tracer = provider.get_tracer("bookline")
    with tracer.start_as_current_span("booking.recover") as root:
        with tracer.start_as_current_span("booking.rollback"):
            with tracer.start_as_current_span("booking.release_lock") as span:
                span.set_attribute("booking.reservation_id", "rsv_123")
            with tracer.start_as_current_span("payment.void") as span:
                span.set_attribute("booking.reservation_id", "rsv_123")
    with tracer.start_as_current_span("careless") as span:  # no Bookline redaction in front of this exporter
        span.set_attribute("note", f"paid with {CARD}")
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


async def test_the_telemetry_store_lists_spans_by_name_and_scans_what_it_stores(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(KEEP_ALL)
    settings = Settings(data_dir=tmp_path, sampling_policy_file=policy, admin_token=TOKEN)
    async with served(build_store(settings, setup_telemetry("telemetry", settings, export=False))) as url:
        provision_keys(settings)
        trace_id = await asyncio.to_thread(export_compensation_trace, url, settings.key_dir)
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as http:
            refused = await http.get("/admin/spans", params={"name": "payment.void"}, headers={"Authorization": ""})
            spans = (await http.get("/admin/spans", params={"name": ["payment.void", "booking.release_lock"]})).json()
            paged = (await http.get("/admin/spans", params={"name": ["payment.void", "booking.release_lock"],
                                                            "limit": 1})).json()  # fmt: skip
            horizon = (await http.get("/admin/horizon")).json()
            scan = await http.get("/admin/card-scan")
            nameless = await http.get("/admin/spans")

    assert refused.status_code == 401
    assert [(s["name"], s["trace_id"], s["attributes"]["booking.reservation_id"]) for s in spans["spans"]] == [
        ("booking.release_lock", trace_id, "rsv_123"),
        ("payment.void", trace_id, "rsv_123"),
    ]
    assert spans["next"] is None and len(paged["spans"]) == 1 and paged["next"]
    assert spans["oldest_start_unix_nano"] == horizon["oldest_start_unix_nano"] > 0
    assert horizon["retention_hours"] == settings.telemetry_retention_hours
    # the careless span's card number was redacted as it arrived: the scan finds nothing
    assert scan.json()["hits"] == []
    assert nameless.status_code == 422


async def test_control_without_redaction_the_store_keeps_a_card_number_and_its_scan_finds_it(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(KEEP_ALL)
    settings = Settings(
        data_dir=tmp_path, sampling_policy_file=policy, admin_token=TOKEN, unsafe_disable_redaction=True
    )
    async with served(build_store(settings, setup_telemetry("telemetry", settings, export=False))) as url:
        provision_keys(settings)
        await asyncio.to_thread(export_compensation_trace, url, settings.key_dir)
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as http:
            scan = await http.get("/admin/card-scan")
    hits = scan.json()["hits"]
    assert [(h["table"], h["column"]) for h in hits] == [("spans", "attributes")]
    assert CARD not in scan.text
