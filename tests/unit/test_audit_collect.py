"""What ``bookline audit`` asks the services for, with the network faked at the transport: every
service's card scan, and the telemetry store's, is asked for the rows written since ``--since``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bookline.audit.collect import collect
from bookline.config import SERVICES, TELEMETRY_STORE, Settings

SINCE = 1_767_225_600.0
CLEAN_SCAN = {"hits": [], "rows_scanned": 0, "rows_with_card": 0, "truncated": False}


class Services:
    """Every admin endpoint of every service, answering empty; remembers the card scans asked for."""

    def __init__(self, settings: Settings) -> None:
        self.by_port = {settings.port_of(s.name): s.name for s in (*SERVICES, TELEMETRY_STORE)}
        self.card_scans: dict[str, dict[str, str]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        service, path = self.by_port[request.url.port], request.url.path
        body: dict[str, Any]
        if path == "/admin/card-scan":
            self.card_scans[service] = dict(request.url.params)
            body = CLEAN_SCAN
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
