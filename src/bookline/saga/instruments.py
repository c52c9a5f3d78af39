"""The booking metrics of TELEMETRY.md, created once per booking-service."""

from __future__ import annotations

from opentelemetry.metrics import Meter


class BookingInstruments:
    def __init__(self, meter: Meter) -> None:
        self.attempts = meter.create_counter("booking.attempts", description="Booking attempts by status and source")
        self.duration = meter.create_histogram(
            "booking.duration_ms", unit="ms", description="Time taken to complete a booking in milliseconds"
        )
        self.contentions = meter.create_counter(
            "booking.lock.contentions", description="Holds refused because another reservation claims the nights"
        )
        self.payment_outcomes = meter.create_counter(
            "booking.payment.outcomes", description="Payment authorization outcomes"
        )
        self.rollbacks = meter.create_counter("booking.rollbacks", description="Saga rollbacks by reason")
