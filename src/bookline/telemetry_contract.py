"""The telemetry registry (``telemetry-registry.yaml``): every custom attribute, span, event and
metric Bookline emits, loaded for the tests that keep code and contract in sync."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

REGISTRY_PATH = Path(__file__).with_name("telemetry-registry.yaml")


@cache
def load_registry() -> dict[str, Any]:
    return yaml.safe_load(REGISTRY_PATH.read_text())
