"""Request and response models of the public booking API (kept apart from the domain objects).

The customer is the bearer token's ``sub``, never a field of the body: a body that still sends
``user_id`` is refused (422), so no client can book in another customer's name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bookline.domain.booking import Source
from bookline.services.common.fields import CardToken, Guests, PropertyId, RoomId, StrictDate


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["card"]
    token: CardToken
    card_last_four: str = Field(pattern=r"^[0-9]{4}$")


class BookingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Source
    property_id: PropertyId
    check_in: StrictDate
    check_out: StrictDate
    guests: Guests
    room_id: RoomId | None = None
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
    trace_url: str | None = Field(default=None, description="the booking's trace in the trace viewer, when one runs")


class BookingList(BaseModel):
    bookings: list[dict] = Field(description="the caller's bookings, newest first")
    next: str | None = Field(description="the cursor of the next page (pass it as `after`), or null at the end")
