"""PricingClient against a fake network (httpx.MockTransport): what it sends, retries and raises."""

import json
from datetime import date

import httpx
import pytest

from bookline.config import Settings
from bookline.domain.errors import BooklineError, DependencyUnavailable, InvalidStay
from bookline.services.pricing.client import PricingClient
from bookline.telemetry import setup_telemetry


def client_with(handler) -> PricingClient:
    client = PricingClient("http://pricing", setup_telemetry("booking-service", Settings()), timeout=1)
    # ServiceClient builds its own httpx client; swap in one over the fake transport
    client.http = httpx.AsyncClient(base_url="http://pricing", transport=httpx.MockTransport(handler))
    return client


async def test_price_rooms_sends_dates_as_iso_strings_and_returns_the_prices():
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path, json.loads(request.content)))
        return httpx.Response(200, json={"prices": [{"room_id": "r1", "total_minor": 100}]})

    client = client_with(handler)
    prices = await client.price_rooms(
        property_id="p1", room_ids=["r1", "r2"], check_in=date(2031, 3, 6), check_out="2031-03-08", guests=2
    )

    assert prices == [{"room_id": "r1", "total_minor": 100}]
    assert sent == [
        (
            "POST",
            "/prices",
            {"property_id": "p1", "room_ids": ["r1", "r2"], "check_in": "2031-03-06",
             "check_out": "2031-03-08", "guests": 2},
        )
    ]  # fmt: skip


async def test_price_rooms_is_retried_twice_when_the_engine_is_unavailable():
    answers = iter([httpx.Response(503), httpx.Response(503), httpx.Response(200, json={"prices": []})])
    client = client_with(lambda _request: next(answers))

    assert await client.price_rooms(
        property_id="p1", room_ids=["r1"], check_in="2031-03-06", check_out="2031-03-07", guests=1
    ) == []


async def test_create_quote_is_not_retried_because_each_call_issues_a_quote():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused")

    client = client_with(handler)
    with pytest.raises(DependencyUnavailable):
        await client.create_quote(
            property_id="p1", room_id="r1", check_in="2031-03-06", check_out="2031-03-07", guests=1
        )
    assert len(calls) == 1


async def test_engine_errors_come_back_as_the_domain_errors_they_stand_for():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"error": {"code": "quote_not_found", "message": "no"}})
        return httpx.Response(422, json={"error": {"code": "invalid_stay", "message": "bad"}})

    client = client_with(handler)
    # codes without a class of their own in domain.errors come back as BooklineError
    with pytest.raises(BooklineError) as not_found:
        await client.get_quote("q_missing")
    with pytest.raises(InvalidStay):
        await client.create_quote(
            property_id="p1", room_id="r1", check_in="2031-03-06", check_out="2031-03-06", guests=1
        )
    assert (not_found.value.status, not_found.value.code) == (404, "quote_not_found")
