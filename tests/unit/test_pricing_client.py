"""PricingClient against a fake pricing engine on a local port: what it sends, retries and raises."""

import json
import socket
from datetime import date

import pytest
from aiohttp import web

from bookline.config import Settings
from bookline.domain.errors import BooklineError, DependencyUnavailable, InvalidStay
from bookline.services.pricing.client import PricingClient
from bookline.telemetry import setup_telemetry
from support.serving import fake_peer


def client_for(url: str) -> PricingClient:
    return PricingClient(url, setup_telemetry("booking-service", Settings()), timeout=1)


async def test_price_rooms_sends_dates_as_iso_strings_and_returns_the_prices():
    sent = []

    async def handler(request: web.Request) -> web.Response:
        sent.append((request.method, request.path, json.loads(await request.read())))
        return web.json_response({"prices": [{"room_id": "r1", "total_minor": 100}]})

    async with fake_peer(handler) as url:
        client = client_for(url)
        prices = await client.price_rooms(
            property_id="p1", room_ids=["r1", "r2"], check_in=date(2031, 3, 6), check_out="2031-03-08", guests=2
        )
        await client.aclose()

    assert prices == [{"room_id": "r1", "total_minor": 100}]
    assert sent == [
        (
            "POST",
            "/prices",
            {"property_id": "p1", "room_ids": ["r1", "r2"], "check_in": "2031-03-06",
             "check_out": "2031-03-08", "guests": 2, "issue_quotes": False},
        )
    ]  # fmt: skip


async def test_price_rooms_is_retried_twice_when_the_engine_is_unavailable():
    answers = iter([web.Response(status=503), web.Response(status=503), web.json_response({"prices": []})])

    async def handler(_request: web.Request) -> web.Response:
        return next(answers)

    async with fake_peer(handler) as url:
        client = client_for(url)
        assert (
            await client.price_rooms(
                property_id="p1", room_ids=["r1"], check_in="2031-03-06", check_out="2031-03-07", guests=1
            )
            == []
        )
        await client.aclose()


async def test_create_quote_is_not_retried_because_each_call_issues_a_quote():
    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.path)
        request.transport.close()  # the connection drops before any answer
        return web.Response(status=500)

    async with fake_peer(handler) as url:
        client = client_for(url)
        with pytest.raises(DependencyUnavailable):
            await client.create_quote(
                property_id="p1", room_id="r1", check_in="2031-03-06", check_out="2031-03-07", guests=1
            )
        await client.aclose()
    assert len(calls) == 1


async def test_a_closed_port_is_dependency_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = client_for(f"http://127.0.0.1:{port}")
    with pytest.raises(DependencyUnavailable):
        await client.get_quote("q_1")
    await client.aclose()


async def test_engine_errors_come_back_as_the_domain_errors_they_stand_for():
    async def handler(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"error": {"code": "quote_not_found", "message": "no"}}, status=404)
        return web.json_response({"error": {"code": "invalid_stay", "message": "bad"}}, status=422)

    async with fake_peer(handler) as url:
        client = client_for(url)
        # codes without a class of their own in domain.errors come back as BooklineError
        with pytest.raises(BooklineError) as not_found:
            await client.get_quote("q_missing")
        with pytest.raises(InvalidStay):
            await client.create_quote(
                property_id="p1", room_id="r1", check_in="2031-03-06", check_out="2031-03-06", guests=1
            )
        assert (not_found.value.status, not_found.value.code) == (404, "quote_not_found")
        await client.aclose()
