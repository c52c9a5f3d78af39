"""The pricing rules of a stay, night by night, in integer minor units (no I/O).

Each night starts at the base rate and the rules below adjust the night's running amount in this
order; percentages are basis points applied with :meth:`Money.percent` (half up):

1. ``base_rate``  the rate plan's base rate
2. ``weekend``    Friday and Saturday nights: + weekend_uplift_bp
3. ``season_summer`` July and August: + 2500 bp; ``season_holidays`` Dec 20 - Jan 2 inclusive: + 3000 bp
4. ``occupancy``  + extra_guest_minor for each guest beyond base_occupancy
5. ``los_7`` / ``los_14``  stays of 7-13 nights: - 1000 bp; 14 nights or more: - 1500 bp

``tax`` is tax_bp of the subtotal (the sum of the nights); total = subtotal + taxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bookline.domain.errors import InvalidRequest, InvalidStay
from bookline.domain.money import Money
from bookline.domain.stay import StayDates
from bookline.domain.terms import (
    DEFAULT_FREE_CANCELLATION_HOURS,
    DEFAULT_PENALTY_NIGHTS,
    CancellationTerms,
    TermsPolicy,
    terms_of,
)

SUMMER_UPLIFT_BP = 2500
HOLIDAYS_UPLIFT_BP = 3000
LOS_7_DISCOUNT_BP = 1000
LOS_14_DISCOUNT_BP = 1500

_FRIDAY, _SATURDAY = 4, 5


@dataclass(frozen=True)
class RatePlan:
    """How one room is priced."""

    room_id: str
    property_id: str
    currency: str
    base_rate_minor: int
    weekend_uplift_bp: int
    extra_guest_minor: int
    base_occupancy: int
    tax_bp: int
    time_zone: str = "UTC"  # the property's, for the cancellation deadline
    free_cancellation_hours: int = DEFAULT_FREE_CANCELLATION_HOURS
    penalty_nights: int = DEFAULT_PENALTY_NIGHTS

    @property
    def terms_policy(self) -> TermsPolicy:
        return TermsPolicy(self.free_cancellation_hours, self.penalty_nights)


@dataclass(frozen=True)
class NightPrice:
    night: date
    amount_minor: int
    rules: list[str]


@dataclass(frozen=True)
class PricedStay:
    nights: list[NightPrice]
    subtotal: Money
    taxes: Money
    total: Money
    rules_applied: list[str]


def season_of(night: date) -> str | None:
    """The season rule a night falls under, if any."""
    if night.month in (7, 8):
        return "season_summer"
    if (night.month == 12 and night.day >= 20) or (night.month == 1 and night.day <= 2):
        return "season_holidays"
    return None


def _length_of_stay_rule(nights: int) -> tuple[str, int] | None:
    if nights >= 14:
        return "los_14", LOS_14_DISCOUNT_BP
    if nights >= 7:
        return "los_7", LOS_7_DISCOUNT_BP
    return None


def price_night(plan: RatePlan, night: date, *, guests: int, stay_nights: int) -> NightPrice:
    """The price of one night of a stay of ``stay_nights`` nights."""
    amount = Money(plan.base_rate_minor, plan.currency)
    rules = ["base_rate"]
    if night.weekday() in (_FRIDAY, _SATURDAY):
        amount += amount.percent(plan.weekend_uplift_bp)
        rules.append("weekend")
    season = season_of(night)
    if season is not None:
        uplift = SUMMER_UPLIFT_BP if season == "season_summer" else HOLIDAYS_UPLIFT_BP
        amount += amount.percent(uplift)
        rules.append(season)
    extra_guests = guests - plan.base_occupancy
    if extra_guests > 0:
        amount += Money(plan.extra_guest_minor * extra_guests, plan.currency)
        rules.append("occupancy")
    length_of_stay = _length_of_stay_rule(stay_nights)
    if length_of_stay is not None:
        name, discount_bp = length_of_stay
        amount -= amount.percent(discount_bp)
        rules.append(name)
    return NightPrice(night, amount.minor, rules)


def price_stay(plan: RatePlan, stay: StayDates, guests: int) -> PricedStay:
    """Price every night of ``stay`` for ``guests`` guests, then add taxes."""
    if stay.nights < 1:
        raise InvalidStay(message="check_out must be after check_in")
    if guests < 1:
        raise InvalidRequest(message="a stay needs at least one guest")
    nights = [price_night(plan, night, guests=guests, stay_nights=stay.nights) for night in stay.each_night()]
    subtotal = Money(sum(n.amount_minor for n in nights), plan.currency)
    taxes = subtotal.percent(plan.tax_bp)
    rules = {rule for n in nights for rule in n.rules}
    if plan.tax_bp:
        rules.add("tax")
    return PricedStay(nights, subtotal, taxes, subtotal + taxes, sorted(rules))


def cancellation_terms(plan: RatePlan, stay: StayDates, priced: PricedStay) -> CancellationTerms:
    """The terms a stay priced on ``plan`` is sold on."""
    return terms_of(
        plan.terms_policy,
        check_in=stay.check_in,
        time_zone=plan.time_zone,
        night_amounts=[n.amount_minor for n in priced.nights],
        tax_bp=plan.tax_bp,
        currency=plan.currency,
    )
