"""The pricing rules, checked against figures computed by hand.

The plan: 100.00 EUR a night, +20% on weekends, 15.00 EUR per guest beyond two, 10% tax.
"""

from dataclasses import replace
from datetime import date

import pytest

from bookline.domain.errors import InvalidRequest, InvalidStay
from bookline.domain.money import Money
from bookline.domain.pricing import RatePlan, price_night, price_stay, season_of
from bookline.domain.stay import StayDates

PLAN = RatePlan(
    room_id="prop-00001-r001",
    property_id="prop-00001",
    currency="EUR",
    base_rate_minor=10_000,
    weekend_uplift_bp=2_000,
    extra_guest_minor=1_500,
    base_occupancy=2,
    tax_bp=1_000,
)


def stay(check_in: str, check_out: str) -> StayDates:
    return StayDates(date.fromisoformat(check_in), date.fromisoformat(check_out))


def amounts(priced) -> list[int]:
    return [n.amount_minor for n in priced.nights]


def test_weekday_night_costs_the_base_rate_plus_tax():
    priced = price_stay(PLAN, stay("2025-03-03", "2025-03-04"), guests=2)  # a Monday

    assert amounts(priced) == [10_000]
    assert priced.nights[0].rules == ["base_rate"]
    assert priced.subtotal == Money(10_000, "EUR")
    assert priced.taxes == Money(1_000, "EUR")
    assert priced.total == Money(11_000, "EUR")
    assert priced.rules_applied == ["base_rate", "tax"]


def test_stay_is_half_open_so_the_check_out_night_is_not_priced():
    priced = price_stay(PLAN, stay("2025-03-03", "2025-03-05"), guests=2)

    assert [n.night for n in priced.nights] == [date(2025, 3, 3), date(2025, 3, 4)]


def test_friday_and_saturday_nights_get_the_weekend_uplift():
    # Thursday, Friday, Saturday: 100.00 + 120.00 + 120.00 = 340.00, tax 34.00
    priced = price_stay(PLAN, stay("2025-03-06", "2025-03-09"), guests=2)

    assert amounts(priced) == [10_000, 12_000, 12_000]
    assert [n.rules for n in priced.nights] == [
        ["base_rate"],
        ["base_rate", "weekend"],
        ["base_rate", "weekend"],
    ]
    assert priced.total == Money(37_400, "EUR")


def test_summer_uplift_compounds_on_the_weekend_price():
    # Tuesday 15 July: 100.00 * 1.25; Friday 18 July: 100.00 * 1.20 * 1.25
    tuesday = price_night(PLAN, date(2025, 7, 15), guests=2, stay_nights=1)
    friday = price_night(PLAN, date(2025, 7, 18), guests=2, stay_nights=1)

    assert (tuesday.amount_minor, tuesday.rules) == (12_500, ["base_rate", "season_summer"])
    assert (friday.amount_minor, friday.rules) == (15_000, ["base_rate", "weekend", "season_summer"])


@pytest.mark.parametrize(
    ("night", "season"),
    [
        (date(2025, 6, 30), None),
        (date(2025, 7, 1), "season_summer"),
        (date(2025, 8, 31), "season_summer"),
        (date(2025, 9, 1), None),
        (date(2025, 12, 19), None),
        (date(2025, 12, 20), "season_holidays"),
        (date(2026, 1, 2), "season_holidays"),
        (date(2026, 1, 3), None),
    ],
)
def test_seasons_cover_july_august_and_december_20_to_january_2_inclusive(night, season):
    assert season_of(night) == season


def test_holiday_season_spans_the_new_year():
    # Wed 31 Dec 130.00, Thu 1 Jan 130.00, Fri 2 Jan 100.00 * 1.20 * 1.30 = 156.00
    priced = price_stay(PLAN, stay("2025-12-31", "2026-01-03"), guests=2)

    assert amounts(priced) == [13_000, 13_000, 15_600]
    assert priced.subtotal == Money(41_600, "EUR")
    assert priced.taxes == Money(4_160, "EUR")
    assert priced.total == Money(45_760, "EUR")
    assert priced.rules_applied == ["base_rate", "season_holidays", "tax", "weekend"]


def test_each_guest_beyond_base_occupancy_adds_the_extra_guest_rate_per_night():
    priced = price_stay(PLAN, stay("2025-03-03", "2025-03-05"), guests=4)

    assert amounts(priced) == [13_000, 13_000]
    assert priced.nights[0].rules == ["base_rate", "occupancy"]


def test_fewer_guests_than_base_occupancy_cost_the_same_as_base_occupancy():
    one = price_stay(PLAN, stay("2025-03-03", "2025-03-04"), guests=1)
    two = price_stay(PLAN, stay("2025-03-03", "2025-03-04"), guests=2)

    assert one.total == two.total == Money(11_000, "EUR")


def test_seven_night_stay_takes_ten_percent_off_every_night():
    # Mon 3 to Mon 10 March: five weekdays at 90.00, Friday and Saturday at 108.00
    priced = price_stay(PLAN, stay("2025-03-03", "2025-03-10"), guests=2)

    assert amounts(priced) == [9_000, 9_000, 9_000, 9_000, 10_800, 10_800, 9_000]
    assert priced.subtotal == Money(66_600, "EUR")
    assert priced.taxes == Money(6_660, "EUR")
    assert priced.total == Money(73_260, "EUR")
    assert priced.rules_applied == ["base_rate", "los_7", "tax", "weekend"]


def test_thirteen_night_stay_still_gets_the_seven_night_discount():
    priced = price_stay(PLAN, stay("2025-03-03", "2025-03-16"), guests=2)

    assert "los_7" in priced.rules_applied and "los_14" not in priced.rules_applied


def test_fourteen_night_stay_takes_fifteen_percent_off_every_night():
    # ten weekdays at 85.00 and four weekend nights at 102.00
    priced = price_stay(PLAN, stay("2025-03-03", "2025-03-17"), guests=2)

    assert amounts(priced).count(8_500) == 10 and amounts(priced).count(10_200) == 4
    assert priced.subtotal == Money(125_800, "EUR")
    assert priced.taxes == Money(12_580, "EUR")
    assert priced.total == Money(138_380, "EUR")
    assert priced.rules_applied == ["base_rate", "los_14", "tax", "weekend"]


def test_rules_apply_in_order_weekend_season_occupancy_then_length_of_stay():
    # Sat 2 Aug, 3 guests, in a 7-night stay: 100.00 -> 120.00 -> 150.00 -> 165.00 -> 148.50
    night = price_night(PLAN, date(2025, 8, 2), guests=3, stay_nights=7)

    assert night.amount_minor == 14_850
    assert night.rules == ["base_rate", "weekend", "season_summer", "occupancy", "los_7"]


def test_percentages_round_half_up_to_the_minor_unit():
    # 100.10 * 25% = 25.025 -> 25.03; then a subtotal of 125.13 * 10% = 12.513 -> 12.51
    plan = replace(PLAN, base_rate_minor=10_010)
    priced = price_stay(plan, stay("2025-07-15", "2025-07-16"), guests=2)

    assert amounts(priced) == [12_513]
    assert priced.taxes == Money(1_251, "EUR")
    assert priced.total == Money(13_764, "EUR")


def test_tax_rounds_an_exact_half_up():
    plan = replace(PLAN, base_rate_minor=10_005)  # 10% of 100.05 = 10.005 -> 10.01
    priced = price_stay(plan, stay("2025-03-03", "2025-03-04"), guests=2)

    assert priced.taxes == Money(1_001, "EUR")


def test_zero_decimal_currency_is_priced_in_whole_yen():
    plan = replace(PLAN, currency="JPY", base_rate_minor=14_000, extra_guest_minor=3_000)
    priced = price_stay(plan, stay("2025-03-03", "2025-03-04"), guests=3)

    assert amounts(priced) == [17_000]
    assert priced.total == Money(18_700, "JPY")


def test_plan_without_tax_does_not_list_the_tax_rule():
    priced = price_stay(replace(PLAN, tax_bp=0), stay("2025-03-03", "2025-03-04"), guests=2)

    assert priced.taxes == Money(0, "EUR")
    assert priced.rules_applied == ["base_rate"]


def test_stay_without_nights_is_rejected():
    with pytest.raises(InvalidStay) as err:
        price_stay(PLAN, stay("2025-03-03", "2025-03-03"), guests=2)
    assert err.value.code == "invalid_stay"


def test_stay_without_guests_is_rejected():
    with pytest.raises(InvalidRequest):
        price_stay(PLAN, stay("2025-03-03", "2025-03-04"), guests=0)
