"""Request and response models of the public booking API (kept apart from the domain objects).

The customer is the bearer token's ``sub``, never a field of the body: a body that still sends
``user_id`` is refused (422), so no client can book in another customer's name.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from bookline.domain.booking import Source
from bookline.domain.ids import CONFIRMATION_CODE
from bookline.services.common.fields import (
    CardToken,
    GuestIn,
    Guests,
    PropertyId,
    QuoteId,
    RoomId,
    RoomType,
    StrictDate,
)


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["card"]
    token: CardToken
    card_last_four: str = Field(pattern=r"^[0-9]{4}$")


class BookingCreate(BaseModel):
    # a room is named by its id or its type, never both (in the schema as in the validation)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"not": {"required": ["room_id", "room_type"]}})

    source: Source
    property_id: PropertyId
    check_in: StrictDate
    check_out: StrictDate
    guests: Guests
    guest: GuestIn
    room_id: RoomId | None = Field(default=None, description="book this room")
    room_type: RoomType | None = Field(
        default=None, description="or the cheapest free room of this type (single, double, suite, ...)"
    )
    quote_id: QuoteId | None = Field(
        default=None,
        description="a quote_id of the availability answer: the booking is charged exactly its total, "
        "or refused with 409 price_changed or quote_expired",
    )
    payment: PaymentIn

    @model_validator(mode="after")
    def room_named_once(self) -> Self:
        if self.room_id is not None and self.room_type is not None:
            raise ValueError("give room_id or room_type, not both")
        return self


class BookingLookup(BaseModel):
    """What a guest without an account finds a booking by."""

    model_config = ConfigDict(extra="forbid")

    confirmation_code: Annotated[str, StringConstraints(pattern=CONFIRMATION_CODE, max_length=14)]
    email: Annotated[str, StringConstraints(min_length=3, max_length=254)]


class BookingCreated(BaseModel):
    booking_id: str
    reservation_id: str
    confirmation_code: str
    status: str
    room_id: str
    room_type: str | None
    total_minor: int
    currency: str
    quote_id: str
    cancellation: dict | None = Field(description="the cancellation terms the stay was sold on")
    trace_id: str | None
    trace_url: str | None = Field(default=None, description="the booking's trace in the trace viewer, when one runs")


class BookingList(BaseModel):
    bookings: list[dict] = Field(description="the caller's bookings, newest first")
    next: str | None = Field(description="the cursor of the next page (pass it as `after`), or null at the end")
