"""PricingClient talking to the real pricing-engine app served on a local port."""

from datetime import date

import pytest

from bookline.auth.provision import provision_keys
from bookline.auth.services import ServiceCredentials
from bookline.config import Settings
from bookline.domain.errors import BooklineError
from bookline.seed import seed_inventory
from bookline.services.pricing.api import build_app
from bookline.services.pricing.client import PricingClient
from bookline.telemetry import setup_telemetry
from support.serving import served


@pytest.fixture
async def client(tmp_path):
    settings = Settings(data_dir=tmp_path)
    await seed_inventory(settings, properties=2, rooms_per_property=3)
    telemetry = setup_telemetry("pricing-engine", settings)
    app = build_app(settings, telemetry)
    async with served(app) as url:
        provision_keys(settings)
        client = PricingClient(
            url, telemetry, timeout=5, credentials=ServiceCredentials.of("booking-service", settings)
        )
        yield client
        await client.aclose()
    telemetry.shutdown()


async def test_client_prices_rooms_then_quotes_one_and_reads_the_quote_back(client):
    stay = {"check_in": date(2031, 7, 4), "check_out": date(2031, 7, 6)}

    prices = await client.price_rooms(
        property_id="prop-00002", room_ids=["prop-00002-r001", "prop-00002-r002"], guests=2, **stay
    )
    quote = await client.create_quote(property_id="prop-00002", room_id="prop-00002-r002", guests=2, **stay)
    fetched = await client.get_quote(quote["quote_id"])

    assert [p["room_id"] for p in prices] == ["prop-00002-r001", "prop-00002-r002"]
    assert quote["total_minor"] == prices[1]["total_minor"]
    assert quote["nights"] == prices[1]["nights"]
    assert fetched == quote and fetched["expired"] is False


async def test_client_raises_quote_not_found_for_an_unknown_quote(client):
    # codes without a class of their own in domain.errors come back as BooklineError
    with pytest.raises(BooklineError) as err:
        await client.get_quote("q_" + "ab" * 12)

    assert (err.value.status, err.value.code) == (404, "quote_not_found")
