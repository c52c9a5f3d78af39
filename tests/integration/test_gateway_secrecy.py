"""The gateway forgets a card number the moment it has tokenized it: not in its database file, not in
a span, a log line or an error. Run with the telemetry redaction switched off, so what is proven is
that the gateway never emits a number, not that the safety net scrubs it."""

from __future__ import annotations

import logging
import re
import sqlite3
from contextlib import closing
from datetime import date

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.config import Settings
from bookline.services.gateway.api import build_app
from bookline.services.gateway.cards import TEST_CARDS, luhn_valid
from bookline.telemetry import setup_telemetry
from support.booking import caller_headers, rsv_id

EXP = {"exp_month": 11, "exp_year": date.today().year + 4}
CVC = "8317"
# the CVC on its own, not as a chance run of digits inside an id, a trace id or a timestamp
CVC_ALONE = re.compile(rf"(?<![0-9a-fA-F]){CVC}(?![0-9a-fA-F])")
OTHER_CARDS = ["5555555555554444", "378282246310005", "6011111111111117"]
BAD_NUMBERS = ["4242424242424241", "4000 0566 5566 5557 1", "1234567890123"]


def _all_text(spans) -> str:
    parts = []
    for span in spans:
        parts += [span.name, str(span.status.description), *map(str, span.attributes.items())]
        for event in span.events:
            parts += [event.name, *map(str, event.attributes.items())]
    return "\n".join(parts)


def _contains_a_number(data: str | bytes, numbers: list[str]) -> list[str]:
    found = []
    for number in numbers:
        for form in {
            number,
            number.replace(" ", ""),
            " ".join(number[i : i + 4] for i in range(0, len(number), 4)),
        }:
            needle = form.encode() if isinstance(data, bytes) else form
            if needle in data:
                found.append(form)
    return found


async def test_no_card_number_cvc_or_expiry_reaches_the_database_spans_logs_or_errors(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    settings = Settings(data_dir=tmp_path, unsafe_disable_redaction=True, gateway_slow_response_s=0.01)
    spans = InMemorySpanExporter()
    telemetry = setup_telemetry("payment-gateway", settings, span_exporter=spans)
    app = build_app(settings, telemetry)
    good = [*TEST_CARDS, *OTHER_CARDS]
    spaced = [" ".join(n[i : i + 4] for i in range(0, len(n), 4)) for n in good]
    bodies: list[str] = []

    async with app.router.lifespan_context(app):
        caller = caller_headers(settings, "booking-service", "payment-gateway")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=caller
        ) as http:
            for i, number in enumerate(good + spaced):
                made = await http.post("/v1/tokens", json={"number": number, "cvc": CVC, **EXP})
                assert made.status_code == 201
                bodies.append(made.text)
                body = {
                    "token": made.json()["token"],
                    "amount_minor": 100,
                    "currency": "EUR",
                    "reservation_id": rsv_id("r"),
                }
                answer = await http.post("/v1/authorizations", json=body, headers={"Idempotency-Key": f"k{i}"})
                bodies.append(answer.text)
                if answer.status_code == 201:
                    captured = await http.post(
                        f"/v1/authorizations/{answer.json()['id']}/capture",
                        headers={"Idempotency-Key": f"c{i}"},
                    )
                    bodies.append(captured.text)
            for number in BAD_NUMBERS:
                refused = await http.post("/v1/tokens", json={"number": number, "cvc": CVC, **EXP})
                assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_card")
                bodies.append(refused.text)
            wrong_type = await http.post("/v1/tokens", json={"number": [good[0]], "cvc": CVC, **EXP})
            assert wrong_type.status_code == 422
            bodies.append(wrong_type.text)
            bodies.append((await http.get("/v1/ledger", params={"reservation_id": rsv_id("r")})).text)
            files_while_running = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    telemetry.shutdown()
    files_after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}

    numbers = good + BAD_NUMBERS
    assert files_while_running and files_after
    for name, data in [*files_while_running.items(), *files_after.items()]:
        assert _contains_a_number(data, numbers) == [], name
    assert _contains_a_number("\n".join(bodies), numbers) == []
    assert not CVC_ALONE.search("\n".join(bodies))
    exported = _all_text(spans.get_finished_spans())
    assert "gateway.authorize" in exported
    assert _contains_a_number(exported, numbers) == []
    assert not CVC_ALONE.search(exported)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert _contains_a_number(logged, numbers) == []


async def test_no_table_has_a_column_for_the_number_cvc_or_expiry(tmp_path):
    settings = Settings(data_dir=tmp_path)
    telemetry = setup_telemetry("payment-gateway", settings, span_exporter=InMemorySpanExporter())
    app = build_app(settings, telemetry)
    async with app.router.lifespan_context(app):
        pass
    telemetry.shutdown()
    with closing(sqlite3.connect(tmp_path / "gateway.db")) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        columns = {c[1] for t in tables for c in conn.execute(f"PRAGMA table_info({t})")}
    assert {"tokens", "authorizations", "idempotency_keys"} <= set(tables)
    assert not {c for c in columns if any(w in c for w in ("number", "pan", "cvc", "cvv", "exp_"))}


@pytest.mark.parametrize("number", BAD_NUMBERS)
def test_the_bad_numbers_used_here_are_really_invalid(number):
    digits = number.replace(" ", "")
    assert not (13 <= len(digits) <= 19 and luhn_valid(digits))
