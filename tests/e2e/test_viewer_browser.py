"""The telemetry store's web page in a real headless Chromium, against the real store.

The store runs as ``bookline serve telemetry`` and the six services as their own processes exporting
OTLP/HTTP to it, as on a laptop after ``bookline up``; a confirmed and a declined booking are made,
then the page is used as a person would: search, open a booking's trace, read its spans, click one,
look at the service map and the dashboard.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookline.seed import seed_inventory
from support.booking import DECLINE, Client
from support.browser import chromium_path, launched_chromium
from support.otlp import INGEST, INGEST_TOKEN
from support.stack import ProcessStack, free_ports, stack_settings

pytestmark = pytest.mark.stack

SIX_SERVICES = {
    "booking-service",
    "availability-service",
    "pricing-engine",
    "confirmation-service",
    "payment-gateway",
    "notification-service",
}
# every trace kept and decided quickly, so the traces the test opens are never dropped under it
KEEP_ALL = """\
decision_wait: 2s
num_traces: 10000
policies:
  - name: keep-all
    type: probabilistic
    probabilistic:
      sampling_percentage: 100
"""
EXPORT_QUICKLY = {
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_BLRP_SCHEDULE_DELAY": "200",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
}
# markup in every field a person reads: the page must show it as text and never run it
HOSTILE = '<img src=x onerror="window.__injected = 1">'
UI_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class Scene:
    url: str
    confirmed: dict[str, Any]
    declined_trace_id: str
    hostile_trace_id: str


def _wait_for(what: str, probe: Callable[[], Any], timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = probe()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _trace(url: str, trace_id: str) -> dict | None:
    response = httpx.get(f"{url}/api/traces/{trace_id}", timeout=5)
    return response.json() if response.status_code == 200 else None


def _trace_with(url: str, trace_id: str, check: Callable[[list[dict]], bool]) -> Callable[[], dict | None]:
    def probe() -> dict | None:
        trace = _trace(url, trace_id)
        return trace if trace and check(trace["spans"]) else None

    return probe


def _whole_booking(spans: list[dict]) -> bool:
    names = {s["name"] for s in spans}
    return {"booking.create", "notification.send_email"} <= names and {s["service"] for s in spans} == SIX_SERVICES


def _rolled_back(spans: list[dict]) -> bool:
    return any(s["name"] == "booking.rollback" for s in spans)


def _booking_statuses(url: str) -> set[str]:
    dashboard = httpx.get(f"{url}/api/dashboard", params={"minutes": 60}, timeout=5).json()
    return {row["status"] for row in dashboard["bookings_per_minute"]}


def _post_hostile_trace(url: str) -> str:
    """One ERROR span whose name, service, attribute, event and status message are markup (OTLP JSON)."""
    trace_id = os.urandom(16).hex()
    now = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": f"svc{HOSTILE}"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "viewer-test"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": os.urandom(8).hex(),
                                "name": HOSTILE,
                                "kind": 2,
                                "startTimeUnixNano": str(now - 5_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": [{"key": "note", "value": {"stringValue": HOSTILE}}],
                                "events": [{"timeUnixNano": str(now - 1_000_000), "name": HOSTILE, "attributes": []}],
                                "status": {"code": 2, "message": HOSTILE},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = httpx.post(
        f"{url}/v1/traces", content=json.dumps(body), headers={"content-type": "application/json", **INGEST}, timeout=5
    )
    assert response.status_code == 200, response.text
    return trace_id


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    chromium_path()  # without a browser, skip (or fail in CI) before starting seven processes
    data_dir: Path = tmp_path_factory.mktemp("viewer")
    policies = data_dir / "keep-all.yaml"
    policies.write_text(KEEP_ALL)
    settings = stack_settings(
        data_dir, telemetry_port=free_ports(1)[0], sampling_policy_file=policies, telemetry_ingest_token=INGEST_TOKEN
    )
    asyncio.run(seed_inventory(settings, properties=2, rooms_per_property=4, seed=11))
    url = settings.url_of("telemetry")
    # the store gets no OTEL_* variables: it must not export its own spans into itself
    store = ProcessStack(settings)
    services = ProcessStack(settings, env={"OTEL_EXPORTER_OTLP_ENDPOINT": url, **EXPORT_QUICKLY})
    try:
        store.start("telemetry")
        store.wait_ready(["telemetry"])
        services.start_all()
        client = Client.for_stack(services)
        confirmed = client.book(client.body(source="web"))
        assert confirmed.status_code == 201, confirmed.text
        declined = client.book(client.body(card=DECLINE, source="mobile"))
        assert declined.status_code == 402, declined.text
        scene = Scene(url, confirmed.json(), declined.json()["trace_id"], _post_hostile_trace(url))

        _wait_for("the confirmed booking's whole trace", _trace_with(url, scene.confirmed["trace_id"], _whole_booking))
        _wait_for("the declined booking's rollback", _trace_with(url, scene.declined_trace_id, _rolled_back))
        _wait_for("the hostile trace", lambda: _trace(url, scene.hostile_trace_id))
        _wait_for("the metrics of both bookings", lambda: _booking_statuses(url) >= {"success", "failed"})
        yield scene
    finally:
        services.stop()
        store.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"the page threw: {errors}"


def _rows(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#waterfall .wf-row",
        "rows => rows.map(r => ({id: r.dataset.spanId, name: r.dataset.spanName, service: r.dataset.service,"
        " depth: Number(r.dataset.depth), error: r.classList.contains('error')}))",
    )


def test_search_by_outcome_finds_the_declined_booking_and_its_row_opens_the_trace(scene: Scene, page: Any):
    page.goto(f"{scene.url}/")
    page.select_option("#f-outcome", "declined")
    page.click("#search-form button[type=submit]")
    page.wait_for_url("**/?outcome=declined")
    row = page.locator(f"#results tr[data-trace-id='{scene.declined_trace_id}']")
    row.wait_for()
    assert page.locator(f"#results tr[data-trace-id='{scene.confirmed['trace_id']}']").count() == 0
    assert "declined" in row.inner_text()

    row.locator("td").nth(2).click()  # anywhere on the row, not only its link
    page.wait_for_url(f"**/traces/{scene.declined_trace_id}")
    page.locator("#waterfall .wf-row[data-span-name='booking.rollback']").wait_for()
    names = {r["name"] for r in _rows(page)}
    assert {"booking.create", "booking.process_payment", "booking.rollback"} <= names

    page.go_back()
    page.wait_for_url("**/?outcome=declined")
    page.locator(f"#results tr[data-trace-id='{scene.declined_trace_id}']").wait_for()


def test_search_by_service_and_attribute_keeps_the_filters_in_the_url(scene: Scene, page: Any):
    page.goto(f"{scene.url}/")
    page.locator("#f-service option[value='booking-service']").wait_for(state="attached")
    page.select_option("#f-service", "booking-service")
    page.click("#search-form .attr-set button")
    page.fill("#search-form .attr-key", "booking.source")
    page.fill("#search-form .attr-value", "mobile")
    page.click("#search-form button[type=submit]")
    page.wait_for_url("**/?service=booking-service&attr.booking.source=mobile")
    page.locator(f"#results tr[data-trace-id='{scene.declined_trace_id}']").wait_for()
    assert page.locator(f"#results tr[data-trace-id='{scene.confirmed['trace_id']}']").count() == 0

    page.reload()  # the filters come back from the URL
    assert page.locator("#search-form .attr-value").input_value() == "mobile"
    assert page.locator("#f-service").input_value() == "booking-service"


def test_a_booking_trace_url_shows_every_span_of_six_services_under_its_parent(scene: Scene, page: Any):
    trace_id = scene.confirmed["trace_id"]
    stored = _trace(scene.url, trace_id)
    assert stored is not None
    page.goto(f"{scene.url}/traces/{trace_id}")
    page.wait_for_function(
        "n => document.querySelectorAll('#waterfall .wf-row').length === n", arg=len(stored["spans"])
    )
    rows = _rows(page)
    assert {r["service"] for r in rows} == SIX_SERVICES
    assert {"POST /bookings", "booking.create", "booking.process_payment", "notification.send_email"} <= {
        r["name"] for r in rows
    }
    # the tree is drawn from the parents: each span one level below its parent, listed after it
    depth = {r["id"]: r["depth"] for r in rows}
    order = [r["id"] for r in rows]
    for span in stored["spans"]:
        parent = span["parent_span_id"]
        if parent in depth:
            assert depth[span["span_id"]] == depth[parent] + 1, span["name"]
            assert order.index(span["span_id"]) > order.index(parent), span["name"]
    assert page.locator("#trace-id").inner_text() == trace_id
    assert page.locator("#waterfall .wf-bar").count() == len(rows)


def test_clicking_a_span_shows_its_attributes_events_and_logs(scene: Scene, page: Any):
    page.goto(f"{scene.url}/traces/{scene.declined_trace_id}")
    page.click("#waterfall .wf-row[data-span-name='booking.process_payment']")
    detail = page.locator("#span-detail")
    detail.locator("h2", has_text="booking.process_payment").wait_for()
    assert "span=" in page.url
    attributes = dict(
        detail.locator("table.kv")
        .first.locator("tr")
        .evaluate_all("rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])")
    )
    assert attributes["payment.card_last_four"] == DECLINE[-4:]
    assert attributes["payment.method"] == "card"
    events = detail.locator("ol.events").inner_text()
    assert "payment_declined" in events and "card_declined" in events
    detail.locator(".span-logs").filter(has_not_text="Loading").wait_for()

    create = page.locator("#waterfall .wf-row[data-span-name='booking.create']")
    assert "error" in (create.get_attribute("class") or "")
    create.click()
    detail.locator("h2", has_text="booking.create").wait_for()
    assert "declined" in detail.inner_text()


def test_collapsing_a_span_hides_its_descendants_and_arrow_keys_move_between_rows(scene: Scene, page: Any):
    page.goto(f"{scene.url}/traces/{scene.confirmed['trace_id']}")
    create = page.locator("#waterfall .wf-row[data-span-name='booking.create']")
    create.wait_for()
    payment = page.locator("#waterfall .wf-row[data-span-name='booking.process_payment']")
    assert payment.is_visible()
    page.locator("#waterfall .wf-item", has=page.locator(".wf-row[data-span-name='booking.create']")).locator(
        ".wf-toggle"
    ).click()
    payment.wait_for(state="hidden")
    create.focus()
    page.keyboard.press("ArrowRight")  # expands again
    payment.wait_for(state="visible")
    page.keyboard.press("ArrowDown")
    rows = _rows(page)
    below = rows[[r["name"] for r in rows].index("booking.create") + 1]
    assert page.evaluate("document.activeElement.dataset.spanId") == below["id"]


def test_the_trace_logs_hold_the_booking_log_lines(scene: Scene, page: Any):
    page.goto(f"{scene.url}/traces/{scene.confirmed['trace_id']}")
    page.click("#trace-logs summary")
    page.locator("#trace-logs .log-body", has_text=scene.confirmed["booking_id"]).first.wait_for()
    page.click("#waterfall .wf-row[data-span-name='booking.create']")
    detail = page.locator("#span-detail")
    detail.locator("h2", has_text="booking.create").wait_for()
    assert scene.confirmed["confirmation_code"] in detail.inner_text()


def test_the_service_map_draws_every_call_between_services(scene: Scene, page: Any):
    edges = httpx.get(f"{scene.url}/api/dependencies", timeout=5).json()["edges"]
    pairs = {(e["caller"], e["callee"]) for e in edges}
    assert {
        ("booking-service", "availability-service"),
        ("booking-service", "pricing-engine"),
        ("booking-service", "payment-gateway"),
        ("booking-service", "confirmation-service"),
        ("confirmation-service", "notification-service"),
    } <= pairs
    page.goto(f"{scene.url}/dependencies")
    page.locator("svg.depmap g.edge").first.wait_for()
    drawn = page.eval_on_selector_all("svg.depmap g.edge", "gs => gs.map(g => [g.dataset.caller, g.dataset.callee])")
    assert {tuple(pair) for pair in drawn} == pairs
    nodes = set(page.eval_on_selector_all("svg.depmap g.node", "gs => gs.map(g => g.dataset.service)"))
    assert SIX_SERVICES <= nodes
    assert page.locator("#edges tbody tr").count() == len(edges)


def test_the_dashboard_charts_bookings_by_status_and_source_and_payment_outcomes(scene: Scene, page: Any):
    page.goto(f"{scene.url}/dashboard")
    page.locator("#dash-bookings svg.chart").wait_for()
    legend = page.locator("#dash-bookings .legend").inner_text()
    assert "success · web" in legend and "failed · mobile" in legend
    assert page.locator("#dash-bookings svg.chart rect.mark").count() >= 1
    assert int(page.locator("#tile-bookings .tile-value").inner_text()) >= 2
    assert page.locator("#tile-p50 .tile-value").inner_text() != "–"
    payments = page.locator("#dash-payments").inner_text()
    assert "declined · card" in payments


def test_markup_in_span_data_is_shown_as_text_and_never_run(scene: Scene, page: Any):
    page.goto(f"{scene.url}/traces/{scene.hostile_trace_id}")
    row = page.locator("#waterfall .wf-row").first
    row.wait_for()
    assert row.get_attribute("data-span-name") == HOSTILE
    row.click()
    page.locator("#span-detail h2").wait_for()
    assert page.locator("#span-detail h2").inner_text() == HOSTILE
    assert HOSTILE in page.locator("#span-detail").inner_text()  # status message, attribute and event, as text
    assert page.locator("#main img").count() == 0
    assert page.evaluate("window.__injected") is None


def test_an_unknown_trace_id_says_not_found(scene: Scene, page: Any):
    page.goto(f"{scene.url}/traces/{'0' * 31}1")
    page.locator("h1", has_text="Trace not found").wait_for()
