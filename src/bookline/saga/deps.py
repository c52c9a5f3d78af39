"""What the saga needs from the outside world, wired once by booking-service."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.trace import Tracer

from bookline.config import Settings
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


def payment_key(kind: str, reservation_id: str) -> str:
    """The gateway idempotency key of one money movement of a reservation."""
    return f"{kind}-{reservation_id}"
