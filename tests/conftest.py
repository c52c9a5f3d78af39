"""Fixtures shared by the suite: a running Bookline (in-process, real HTTP) with demo inventory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bookline.seed import seed_inventory
from support.booking import Client
from support.stack import InProcessStack, stack_settings


def start_stack(data_dir: Path, properties: int = 3, rooms: int = 6, **overrides) -> InProcessStack:
    settings = stack_settings(data_dir, **overrides)
    asyncio.run(seed_inventory(settings, properties=properties, rooms_per_property=rooms, seed=7))
    return InProcessStack(settings).start()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessStack]:
    s = start_stack(tmp_path_factory.mktemp("bookline"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(stack: InProcessStack) -> Client:
    return Client.for_stack(stack)
