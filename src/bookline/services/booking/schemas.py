"""Request and response models of the public booking API (kept apart from the domain objects)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bookline.domain.booking import Source

# opaque ids only: an e-mail address or a name is not an id and is refused
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["card"]
    token: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    card_last_four: str = Field(pattern=r"^[0-9]{4}$")


class BookingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    source: Source
    property_id: str = Field(min_length=1, max_length=40, pattern=ID_PATTERN)
    check_in: date
    check_out: date
    guests: int = Field(ge=1, le=20)
    room_id: str | None = Field(default=None, min_length=1, max_length=60, pattern=ID_PATTERN)
    payment: PaymentIn


class BookingCreated(BaseModel):
    booking_id: str
    reservation_id: str
    confirmation_code: str
    status: str
    room_id: str
    total_minor: int
    currency: str
    trace_id: str | None
