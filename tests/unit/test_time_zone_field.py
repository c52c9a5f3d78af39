"""A time zone in an API body is one the e-mail can show a deadline in.

The pattern alone let ``"A"`` through confirmation-service; notification-service then failed to render
the e-mail, asynchronously, with nobody to answer the caller."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from bookline.services.common.fields import TimeZone
from bookline.services.confirmation.api import TermsIn


class Place(BaseModel):
    time_zone: TimeZone


@pytest.mark.parametrize("zone", ["Europe/Lisbon", "Asia/Tokyo", "UTC", "America/Argentina/Buenos_Aires"])
def test_iana_zones_are_accepted(zone: str):
    assert Place(time_zone=zone).time_zone == zone


@pytest.mark.parametrize("zone", ["A", "Mars/Olympus_Mons", "europe/lisbon", "../etc/passwd", "", "Europe/Lisbon "])
def test_anything_else_is_refused(zone: str):
    with pytest.raises(ValidationError):
        Place(time_zone=zone)


def test_confirmation_terms_refuse_an_unknown_zone():
    terms = {
        "free_cancellation_hours": 48,
        "free_cancellation_until": "2027-01-10T13:00:00+00:00",
        "time_zone": "A",
        "penalty_minor": 100,
        "currency": "EUR",
    }
    with pytest.raises(ValidationError, match="IANA time zone"):
        TermsIn.model_validate(terms)
    assert TermsIn.model_validate({**terms, "time_zone": "Europe/Lisbon"}).time_zone == "Europe/Lisbon"
