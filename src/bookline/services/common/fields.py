"""Strict field types every service's API shares: ids in their one format, dates as ``YYYY-MM-DD``
only, integers that are integers (not ``true``, not ``"2"``), bounded. Each refuses what looks like a
card number, so none can reach a database or a span."""

from __future__ import annotations

import re
from datetime import date
from functools import cache
from typing import Annotated, Any
from zoneinfo import available_timezones

from fastapi import Path
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from bookline.domain import guest, ids

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: Any) -> Any:
    # a date is a date: not a datetime, a timestamp or a number
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("must be a date as YYYY-MM-DD")


NoCard = AfterValidator(ids.refuse_card_number)


def _id(pattern: str, max_length: int) -> Any:
    return Annotated[str, StringConstraints(pattern=pattern, max_length=max_length), NoCard]


StrictDate = Annotated[date, BeforeValidator(_iso_date)]
BookingId = _id(ids.BOOKING_ID, 27)
ReservationId = _id(ids.RESERVATION_ID, 28)
AuthorizationId = _id(ids.AUTHORIZATION_ID, 29)
CardToken = _id(ids.CARD_TOKEN, 28)
QuoteId = _id(ids.QUOTE_ID, 26)
PropertyId = _id(ids.PROPERTY_ID, 40)
RoomId = _id(ids.ROOM_ID, 60)
RoomType = Annotated[str, StringConstraints(pattern=ids.ROOM_TYPE, max_length=40)]
Guests = Annotated[int, Field(strict=True, ge=1, le=20)]
MinorAmount = Annotated[int, Field(strict=True, ge=0, le=10**12)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _known_time_zone(value: str) -> str:
    # a zone the e-mail can show the deadline in: a well-formed but unknown key would fail later,
    # in notification-service, with nobody to answer
    if value not in _time_zones():
        raise ValueError("must be an IANA time zone, e.g. Europe/Lisbon")
    return value


TimeZone = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_+/-]{0,63}$"),
    AfterValidator(_known_time_zone),
]
# a guest's personal data: checked by functions whose refusals never repeat the value
# what JSON Schema can say of them is in the schema; the rest (the RFC's e-mail syntax, no control
# character of any script, no card number) the validators check
GuestName = Annotated[
    str,
    Field(min_length=1, max_length=guest.MAX_NAME_LENGTH, pattern=r"^[^@]*\S[^@]*$"),
    AfterValidator(guest.guest_name),
]
GuestEmail = Annotated[
    str,
    Field(max_length=guest.MAX_EMAIL_LENGTH, json_schema_extra={"format": "email"}),
    AfterValidator(guest.guest_email),
]
GuestPhone = Annotated[str, Field(max_length=16, pattern=guest.PHONE), AfterValidator(guest.guest_phone)]


class GuestIn(BaseModel):
    """The guest a stay is booked for (personal data: stored by booking- and confirmation-service only)."""

    model_config = ConfigDict(extra="forbid")

    name: GuestName
    email: GuestEmail
    phone: GuestPhone | None = Field(default=None, description="E.164, e.g. +351912345678")

    def to_domain(self) -> guest.Guest:
        return guest.Guest(self.name, self.email, self.phone)


def path_id(pattern: str, max_length: int, description: str) -> Any:
    """A path parameter in one id format (404 would hide a typo; a bad format answers 422)."""
    return Annotated[str, Path(pattern=pattern, max_length=max_length, description=description), NoCard]


BookingIdPath = path_id(ids.BOOKING_ID, 27, "bk_ and 24 hexadecimal digits")
ReservationIdPath = path_id(ids.RESERVATION_ID, 28, "rsv_ and 24 hexadecimal digits")
AuthorizationIdPath = path_id(ids.AUTHORIZATION_ID, 29, "auth_ and 24 hexadecimal digits")
PropertyIdPath = path_id(ids.PROPERTY_ID, 40, "a property id")
QuoteIdPath = path_id(ids.QUOTE_ID, 26, "q_ and 24 hexadecimal digits")
