"""Request and response models of the public booking API (kept apart from the domain objects)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bookline.domain.booking import Source
from bookline.redaction import looks_like_card_number

# opaque ids only: an e-mail address or a name is not an id and is refused
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


def _not_a_card_number(value: str | None) -> str | None:
    # an id that looks like a card number would be stored and traced: refuse it
    if value is not None and looks_like_card_number(value):
        raise ValueError("must not look like a card number")
    return value


NoCard = AfterValidator(_not_a_card_number)


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["card"]
    token: str = Field(min_length=5, max_length=100, pattern=r"^tok_[A-Za-z0-9]+$")
    card_last_four: str = Field(pattern=r"^[0-9]{4}$")


class BookingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN), NoCard]
    source: Source
    property_id: Annotated[str, Field(min_length=1, max_length=40, pattern=ID_PATTERN), NoCard]
    check_in: date
    check_out: date
    guests: int = Field(ge=1, le=20)
    room_id: Annotated[str | None, Field(min_length=1, max_length=60, pattern=ID_PATTERN), NoCard] = None
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
