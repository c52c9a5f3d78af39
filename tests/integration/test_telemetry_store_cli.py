"""``bookline traces`` against a running store: the trace list, the terminal waterfall of one trace
(tree, services, duration bars, status, key booking and payment attributes, events) at 100 columns,
``last``, and what it says when the store is not there."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from typer.testing import CliRunner

from bookline.config import Settings
from bookline.services.telemetry.api import build_app
from bookline.telemetry import setup_telemetry
from bookline.traces_cli import traces_app
from support.otlp import INGEST, INGEST_TOKEN, kv
from support.serving import served
from support.stack import free_ports

DECLINED = "d" * 32
CONFIRMED = "c" * 32
START = 1_800_000_000_000_000_000
MS = 1_000_000


def add(
    request: ExportTraceServiceRequest,
    service: str,
    trace_id: str,
    span_id: int,
    parent: int | None,
    name: str,
    start_ms: float,
    duration_ms: float,
    *,
    error: str | None = None,
    events: tuple = (),
    **attrs: object,
) -> None:
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(kv("service.name", service))
    resource_spans.scope_spans.add().spans.append(
        Span(
            trace_id=bytes.fromhex(trace_id),
            span_id=span_id.to_bytes(8, "big"),
            parent_span_id=parent.to_bytes(8, "big") if parent else b"",
            name=name,
            start_time_unix_nano=START + int(start_ms * MS),
            end_time_unix_nano=START + int((start_ms + duration_ms) * MS),
            attributes=[kv(k.replace("__", "."), v) for k, v in attrs.items()],
            status=Status(code=Status.STATUS_CODE_ERROR, message=error) if error else Status(),
            events=list(events),
        )
    )


def bookings() -> bytes:
    request = ExportTraceServiceRequest()
    add(request, "booking-service", DECLINED, 1, None, "POST /bookings", 0, 180, http__response__status_code=402)
    add(
        request,
        "booking-service",
        DECLINED,
        2,
        1,
        "booking.create",
        1,
        175,
        error="Payment declined",
        booking__outcome="declined",
        booking__reservation_id="res_0001",
    )
    add(request, "booking-service", DECLINED, 3, 2, "booking.acquire_lock", 5, 20, booking__lock_acquired=True)
    declined = Span.Event(
        name="payment_declined",
        time_unix_nano=START + 60 * MS,
        attributes=[kv("payment.decline_reason", "card_declined")],
    )
    add(
        request,
        "booking-service",
        DECLINED,
        4,
        2,
        "booking.process_payment",
        30,
        40,
        events=(declined,),
        payment__status="declined",
        payment__transaction_id="txn_77",
    )
    add(request, "payment-gateway", DECLINED, 5, 4, "POST /v1/authorizations", 35, 30, http__response__status_code=402)
    add(
        request,
        "booking-service",
        DECLINED,
        6,
        2,
        "booking.rollback",
        80,
        90,
        booking__rollback__reason="payment_declined",
    )
    add(request, "booking-service", DECLINED, 7, 6, "booking.release_lock", 85, 60)
    add(request, "booking-service", CONFIRMED, 11, None, "POST /bookings", 1000, 90)
    add(
        request,
        "booking-service",
        CONFIRMED,
        12,
        11,
        "booking.create",
        1001,
        85,
        booking__outcome="confirmed",
        booking__confirmation_code="BKL-AB12-CD34",
    )
    return request.SerializeToString()


@pytest.fixture
async def store_url(tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(data_dir=tmp_path, telemetry_ingest_token=INGEST_TOKEN)
    async with served(build_app(settings, setup_telemetry("telemetry", settings))) as url:
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{url}/v1/traces", content=bookings(), headers={"content-type": "application/x-protobuf", **INGEST}
            )
            assert answer.status_code == 200
        yield url


async def run(*args: str) -> tuple[int, str]:
    """Run the CLI off the event loop (the store is served on it) at 100 columns."""
    result = await asyncio.to_thread(CliRunner().invoke, traces_app, list(args), env={"COLUMNS": "100"})
    return result.exit_code, result.output


async def test_list_shows_the_newest_traces_with_their_outcome(store_url: str):
    code, out = await run("list", "--url", store_url)
    assert code == 0, out
    assert out.index(CONFIRMED) < out.index(DECLINED)
    assert "declined" in out and "confirmed" in out
    assert "POST /bookings" in out
    assert "* still waiting for the tail-sampling decision" in out

    code, out = await run("list", "--url", store_url, "--outcome", "declined")
    assert (code, CONFIRMED in out, DECLINED in out) == (0, False, True)
    code, out = await run("list", "--url", store_url, "--attr", "payment.transaction_id=txn_77")
    assert (code, CONFIRMED in out, DECLINED in out) == (0, False, True)
    code, out = await run("list", "--url", store_url, "--service", "nobody")
    assert (code, out.strip()) == (0, "no trace matches")


async def test_show_draws_the_waterfall_with_tree_services_bars_status_attributes_and_events(store_url: str):
    code, out = await run("show", DECLINED, "--url", store_url)
    assert code == 0, out
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines), max(lines, key=len)
    assert lines[0].startswith(f"trace {DECLINED}")
    assert "7 spans" in lines[1] and "2 services: booking-service, payment-gateway" in lines[1]

    def line_of(name: str) -> str:
        return next(line for line in lines if re.match(rf"^\s*{re.escape(name)}\s", line))

    def indent(name: str) -> int:
        return len(line_of(name)) - len(line_of(name).lstrip())

    # the tree: each child one level deeper than its parent, in start order
    order = [
        "POST /bookings",
        "booking.create",
        "booking.acquire_lock",
        "booking.process_payment",
        "POST /v1/authorizations",
        "booking.rollback",
        "booking.release_lock",
    ]
    positions = [lines.index(line_of(name)) for name in order]
    assert positions == sorted(positions)
    assert [indent(n) for n in order] == [0, 2, 4, 4, 6, 4, 6]
    assert "payment-gateway" in line_of("POST /v1/authorizations")
    assert "ERROR" in line_of("booking.create")
    assert "█" in line_of("booking.rollback")
    # the bar of a span that starts later starts further right
    assert line_of("booking.rollback").index("█") > line_of("booking.acquire_lock").index("█")
    assert "175 ms" in line_of("booking.create")

    body = "\n".join(lines)
    for detail in (
        "booking.outcome=declined",
        "booking.reservation_id=res_0001",
        "payment.status=declined",
        "payment.transaction_id=txn_77",
        "booking.lock_acquired=true",
        "booking.rollback.reason=payment_declined",
        "http.response.status_code=402",
        "! Payment declined",
    ):
        assert detail in body, detail
    event = lines.index(next(line for line in lines if "◆ payment_declined" in line))
    assert lines.index(line_of("booking.process_payment")) < event < lines.index(line_of("POST /v1/authorizations"))
    assert "payment.decline_reason=card_declined" in lines[event]


async def test_last_draws_the_newest_trace_and_can_pick_by_outcome(store_url: str):
    code, out = await run("last", "--url", store_url)
    assert (code, out.splitlines()[0].startswith(f"trace {CONFIRMED}")) == (0, True)
    assert "booking.confirmation_code=BKL-AB12-CD34" in out
    code, out = await run("last", "--url", store_url, "--outcome", "declined")
    assert (code, out.splitlines()[0].startswith(f"trace {DECLINED}")) == (0, True)
    code, out = await run("last", "--url", store_url, "--outcome", "expired")
    assert (code, "no trace matches" in out) == (1, True)


async def test_an_unknown_trace_and_a_bad_option_say_what_is_wrong(store_url: str):
    code, out = await run("show", "e" * 32, "--url", store_url)
    assert code == 1
    assert "no trace" in out and "tail sampling" in out
    code, out = await run("show", "not-an-id", "--url", store_url)
    assert (code, "32 hexadecimal" in out) == (1, True)
    code, out = await run("list", "--url", store_url, "--attr", "no-equals-sign")
    assert (code, "KEY=VALUE" in out) == (2, True)
    code, out = await run("list", "--url", store_url, "--status", "sideways")
    assert (code, "invalid" in out or "expected ok, error or unset" in out) == (1, True)


async def test_without_a_running_store_the_cli_says_how_to_start_it():
    (port,) = free_ports(1)
    code, out = await run("list", "--url", f"http://127.0.0.1:{port}")
    assert code == 1
    assert "is the telemetry store running" in " ".join(out.split())
    assert "bookline up" in out
