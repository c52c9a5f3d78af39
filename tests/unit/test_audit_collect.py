"""What ``bookline audit`` asks the services for, with the network faked at the transport: every
service's card scan, and the telemetry store's, is asked for the rows written since ``--since``; the
data scans get booking-service's guest names in their request bodies only, in batches under the
services' body limit, and nothing of the names is kept in the snapshot."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from bookline.audit.checks import check_no_personal_data
from bookline.audit.collect import collect, name_batches
from bookline.config import SERVICES, TELEMETRY_STORE, Settings

SINCE = 1_767_225_600.0
CLEAN_SCAN = {"hits": [], "rows_scanned": 0, "rows_with_card": 0, "truncated": False}
CLEAN_DATA_SCAN = {"hits": [], "rows_scanned": 0, "rows_with_hits": 0, "truncated": False}
NAMES = ["Ana Lopez", "João Silva", "Mei Chen", "Al"]  # "Al" is too short to look for


class Services:
    """Every admin endpoint of every service, answering empty; remembers the scans asked for."""

    def __init__(self, settings: Settings, names: list[str] | None = None, pages: int = 1) -> None:
        self.by_port = {settings.port_of(s.name): s.name for s in (*SERVICES, TELEMETRY_STORE)}
        self.names, self.pages = names, pages
        self.card_scans: dict[str, dict[str, str]] = {}
        self.data_scans: dict[str, list[dict[str, Any]]] = {}
        self.body_sizes: list[int] = []
        self.found: dict[str, list[dict[str, str]]] = {}  # service -> the hits its data scan answers

    def __call__(self, request: httpx.Request) -> httpx.Response:
        service, path = self.by_port[request.url.port], request.url.path
        body: dict[str, Any]
        if path == "/admin/card-scan":
            self.card_scans[service] = dict(request.url.params)
            body = CLEAN_SCAN
        elif path == "/admin/data-scan":
            assert request.method == "POST" and not request.url.params  # the names only in the body
            self.body_sizes.append(len(request.content))
            self.data_scans.setdefault(service, []).append(json.loads(request.content))
            body = {**CLEAN_DATA_SCAN, "hits": self.found.get(service, [])}
        elif path == "/admin/guest-names":
            assert service == "booking-service"
            if self.names is None:
                return httpx.Response(404, json={"error": {"code": "not_found", "message": "Not Found"}})
            page = int(request.url.params.get("after", "0"))
            share = self.names[page :: self.pages]
            body = {"names": share, "next": str(page + 1) if page + 1 < self.pages else None}
        elif path == "/admin/horizon":
            body = {"oldest_start_unix_nano": None}
        else:  # a paged list, named by the last part of its path
            body = {path.rsplit("/", 1)[-1]: [], "next": None}
        return httpx.Response(200, json=body)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)  # telemetry goes to the local store, which the audit reads
    return Settings()


@pytest.mark.parametrize("since", [SINCE, None], ids=["since", "everything"])
def test_the_audit_passes_since_to_the_card_scan_of_every_service_and_of_the_store(
    settings: Settings, since: float | None
) -> None:
    services = Services(settings)
    with httpx.Client(transport=httpx.MockTransport(services)) as http:
        snapshot = collect(settings, "admin-token", since=since, http=http)

    expected = {"since": repr(since)} if since is not None else {}
    assert services.card_scans == {name: expected for name in services.by_port.values()}
    assert sorted(snapshot.card_scanned) == sorted(services.by_port.values())


@pytest.mark.parametrize("since", [SINCE, None], ids=["since", "everything"])
def test_the_data_scan_of_every_service_and_of_the_store_looks_for_booking_services_guest_names(
    settings: Settings, since: float | None
) -> None:
    services = Services(settings, names=NAMES, pages=2)
    with httpx.Client(transport=httpx.MockTransport(services)) as http:
        snapshot = collect(settings, "admin-token", since=since, http=http)

    looked_for = sorted(n for n in NAMES if n != "Al")
    assert services.data_scans == {name: [{"since": since, "names": looked_for}] for name in services.by_port.values()}
    assert sorted(snapshot.data_scanned) == sorted(services.by_port.values())
    assert snapshot.guest_names == 3 and snapshot.guest_names_unavailable is None
    assert not [n for n in NAMES if n in repr(snapshot)]  # only their number is kept


def test_without_a_guest_names_endpoint_the_scans_run_without_names_and_the_check_says_so(
    settings: Settings,
) -> None:
    services = Services(settings, names=None)  # an older booking-service: 404
    with httpx.Client(transport=httpx.MockTransport(services)) as http:
        snapshot = collect(settings, "admin-token", http=http)

    assert {s: [b["names"] for b in bodies] for s, bodies in services.data_scans.items()} == {
        name: [[]] for name in services.by_port.values()
    }
    assert snapshot.guest_names is None
    result = check_no_personal_data(snapshot)
    assert result.status == "pass"
    assert result.notes[0].startswith("booking-service has no GET /admin/guest-names")


def test_names_go_in_batches_under_the_body_limit_and_the_hits_of_every_batch_are_kept_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(max_body_bytes=4096)
    names = [f"Guest Number{i:05d}" for i in range(1000)]
    services = Services(settings, names=names)
    phone = {"kind": "phone", "table": "rates", "column": "note", "row_key": "r1"}
    services.found["pricing-engine"] = [phone]  # the same place, found by every batch
    with httpx.Client(transport=httpx.MockTransport(services)) as http:
        snapshot = collect(settings, "admin-token", http=http)

    batches = services.data_scans["pricing-engine"]
    assert len(batches) > 1 and max(services.body_sizes) <= settings.max_body_bytes
    assert sorted(n for body in batches for n in body["names"]) == sorted(names)
    assert [(h.kind, h.service, h.table) for h in snapshot.data_hits] == [("phone", "pricing-engine", "rates")]
    (violation,) = check_no_personal_data(snapshot).violations
    assert violation.message == "phone: rates.note of row r1 holds a phone number"


def test_a_batch_never_holds_more_than_the_scan_takes() -> None:
    batches = name_batches([f"n{i:06d}" for i in range(25_000)], max_body_bytes=10**9)

    assert [len(b) for b in batches] == [10_000, 10_000, 5_000]
    assert name_batches([], 65536) == [[]]  # every scan runs once, with no name


def test_with_telemetry_off_the_stores_data_scan_is_skipped_with_the_reason(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    settings = Settings()
    services = Services(settings, names=NAMES)
    with httpx.Client(transport=httpx.MockTransport(services)) as http:
        snapshot = collect(settings, "admin-token", http=http)

    assert TELEMETRY_STORE.name not in services.data_scans
    assert snapshot.data_scan_skipped == {TELEMETRY_STORE.name: "telemetry is off (OTEL_SDK_DISABLED=true)"}
    assert "telemetry not scanned: telemetry is off" in " ".join(check_no_personal_data(snapshot).notes)
