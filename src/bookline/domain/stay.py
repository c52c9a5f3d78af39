"""A stay is the half-open range of nights [check_in, check_out)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from bookline.domain.errors import InvalidStay

# bookings open two years ahead
MAX_DAYS_AHEAD = 730


@dataclass(frozen=True)
class StayDates:
    check_in: date
    check_out: date

    @classmethod
    def parse(
        cls, check_in: date, check_out: date, *, today: date, max_nights: int, max_days_ahead: int = MAX_DAYS_AHEAD
    ) -> StayDates:
        """A stay a guest may book today: starts today or later and at most ``max_days_ahead`` days
        from today, at least one night, at most max_nights."""
        if check_out <= check_in:
            raise InvalidStay("check_out_not_after_check_in", "check_out must be after check_in")
        if check_in < today:
            raise InvalidStay("check_in_in_past", "check_in must be today or later")
        if (check_in - today).days > max_days_ahead:
            raise InvalidStay("check_in_too_far", f"check_in may be at most {max_days_ahead} days from today")
        stay = cls(check_in, check_out)
        if stay.nights > max_nights:
            raise InvalidStay("stay_too_long", f"a stay may last at most {max_nights} nights")
        return stay

    @property
    def nights(self) -> int:
        return (self.check_out - self.check_in).days

    def each_night(self) -> Iterator[date]:
        for offset in range(self.nights):
            yield self.check_in + timedelta(days=offset)
