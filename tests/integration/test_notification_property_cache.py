"""notification-service names a property as availability-service described it at most
``property_cache_s`` ago: one call per property and period, not one per e-mail (real
availability-service over HTTP; the control asks every time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bookline.seed import seed_inventory
from bookline.services.notification.api import BookingSource
from bookline.telemetry import setup_telemetry
from support.stack import InProcessStack, stack_settings

PROPERTY = "prop-00001"


@pytest.fixture(scope="module")
def availability(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessStack]:
    settings = stack_settings(Path(tmp_path_factory.mktemp("bookline")))
    asyncio.run(seed_inventory(settings, properties=2, rooms_per_property=2, seed=7))
    stack = InProcessStack(settings, services=("availability-service",)).start()
    yield stack
    stack.stop()


def property_reads(stack: InProcessStack) -> int:
    """The property reads availability-service has served so far."""
    return sum(1 for s in stack.exporter.get_finished_spans() if s.name == "GET /properties/{property_id}")


async def ask(stack: InProcessStack, cache_s: float, property_ids: list[str], *, expire: bool = False) -> int:
    """How many reads availability-service served while one BookingSource asked for ``property_ids``."""
    settings = stack.settings.model_copy(update={"property_cache_s": cache_s})
    telemetry = setup_telemetry("notification-service", settings, span_exporter=InMemorySpanExporter())
    source = BookingSource(settings, telemetry)
    before = property_reads(stack)
    try:
        for property_id in property_ids:
            place = await source.get_property(property_id)
            assert place["property_id"] == property_id and place["rooms"]
        if expire:
            assert source.properties is not None
            source.properties.expire(time.monotonic() + cache_s + 1)
            await source.get_property(property_ids[0])
    finally:
        await source.aclose()
        telemetry.shutdown()
    await asyncio.sleep(0.05)  # the server span ends after the answer is sent
    return property_reads(stack) - before


async def test_a_property_is_asked_for_once_while_it_is_kept(availability: InProcessStack):
    assert await ask(availability, 300, [PROPERTY, PROPERTY, PROPERTY]) == 1


async def test_each_property_is_kept_on_its_own(availability: InProcessStack):
    assert await ask(availability, 300, [PROPERTY, "prop-00002", PROPERTY, "prop-00002"]) == 2


async def test_a_kept_property_is_asked_for_again_once_it_expires(availability: InProcessStack):
    assert await ask(availability, 300, [PROPERTY, PROPERTY], expire=True) == 2


async def test_control_without_the_cache_every_email_asks(availability: InProcessStack):
    assert await ask(availability, 0, [PROPERTY, PROPERTY, PROPERTY]) == 3
