"""What the saga needs from the outside world, wired once by booking-service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.trace import Tracer

from bookline.config import Settings
from bookline.faults import FaultFile
from bookline.saga.instruments import BookingInstruments
from bookline.saga.store import SagaStore
from bookline.services.availability.client import AvailabilityClient
from bookline.services.confirmation.client import ConfirmationClient
from bookline.services.gateway.client import GatewayClient
from bookline.services.pricing.client import PricingClient


@dataclass
class SagaDeps:
    store: SagaStore
    availability: AvailabilityClient
    pricing: PricingClient
    gateway: GatewayClient
    confirmation: ConfirmationClient
    tracer: Tracer
    instruments: BookingInstruments
    settings: Settings
    # the fault file (hold TTL, crash points); None: no faults
    faults: FaultFile | None = None
    # push finished spans and logs out within a timeout (seconds): what a crash point does before it exits
    flush_telemetry: Callable[[float], object] = field(default=lambda _timeout_s: None)


def payment_key(kind: str, reservation_id: str) -> str:
    """The gateway idempotency key of one money movement of a reservation."""
    return f"{kind}-{reservation_id}"
