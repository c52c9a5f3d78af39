"""Card checks, brands, test-card behaviours and random faults of the gateway (pure, no I/O)."""

import random
from datetime import date

import pytest

from bookline.domain.errors import InvalidRequest
from bookline.services.gateway.cards import (
    TEST_CARDS,
    Behavior,
    FaultRates,
    brand_of,
    decide,
    draw,
    examine_card,
    luhn_valid,
)

TODAY = date(2030, 6, 15)


class Draws(random.Random):
    """A random source that answers the given draws in order."""

    def __init__(self, *draws: float) -> None:
        super().__init__()
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def examine(number="4242424242424242", exp_month=12, exp_year=2031, cvc="123"):
    return examine_card(number, exp_month, exp_year, cvc, today=TODAY)


@pytest.mark.parametrize("number", sorted(TEST_CARDS))
def test_every_test_card_is_luhn_valid(number):
    assert luhn_valid(number)


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5105105105105100", "mastercard"),
        ("5555555555554444", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720990000000007", "mastercard"),
        ("2721000000000004", "unknown"),
        ("378282246310005", "amex"),
        ("340000000000009", "amex"),
        ("6011111111111117", "unknown"),
    ],
)
def test_brand_follows_the_leading_digits(number, brand):
    assert brand_of(number) == brand


def test_a_valid_card_keeps_only_last_four_brand_and_behavior():
    facts = examine(number="4000 0000 0000 9995")
    assert (facts.last4, facts.brand, facts.behavior) == ("9995", "visa", Behavior.INSUFFICIENT_FUNDS)
    assert "4000" not in repr(facts)


def test_a_card_that_is_not_a_test_card_approves():
    assert examine(number="5555555555554444").behavior is Behavior.APPROVE


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"number": "4242424242424241"}, "number"),  # Luhn fails
        ({"number": "424242424242"}, "number"),  # 12 digits
        ({"number": "42424242424242424242"}, "number"),  # 20 digits
        ({"number": "4242-4242-4242-4242"}, "number"),
        ({"number": "\uff14\uff12" * 8}, "number"),  # fullwidth digits
        ({"number": True}, "number"),
        ({"exp_month": 13}, "exp_month"),
        ({"exp_month": 0}, "exp_month"),
        ({"exp_year": 203}, "exp_year"),
        ({"exp_year": 2030, "exp_month": 5}, "exp_year"),  # expired last month
        ({"exp_year": 29}, "exp_year"),
        ({"cvc": "12"}, "cvc"),
        ({"cvc": "12345"}, "cvc"),
        ({"cvc": "12a"}, "cvc"),
    ],
)
def test_an_invalid_card_is_refused_without_echoing_the_number(changes, field):
    with pytest.raises(InvalidRequest) as refused:
        examine(**changes)
    assert refused.value.code == "invalid_card"
    assert refused.value.details == {"field": field}
    assert "4242" not in str(refused.value.to_body())


def test_a_card_is_valid_through_its_expiry_month_and_accepts_two_digit_years():
    assert examine(exp_month=6, exp_year=2030).last4 == "4242"
    assert examine(exp_month="06", exp_year="30").last4 == "4242"
    assert examine(cvc="1234").last4 == "4242"


def test_a_test_card_keeps_its_behavior_whatever_the_fault_rates():
    rates = FaultRates(decline=1.0, timeout=1.0, error=1.0)
    assert decide(Behavior.INSUFFICIENT_FUNDS, rates, Draws()) is Behavior.INSUFFICIENT_FUNDS


@pytest.mark.parametrize(
    ("draw", "outcome"),
    [
        (0.05, Behavior.PROCESSING_ERROR),
        (0.15, Behavior.CARD_DECLINED),
        (0.35, Behavior.SLOW),
        (0.65, Behavior.APPROVE),
    ],
)
def test_an_approving_card_fails_at_the_configured_rates(draw, outcome):
    rates = FaultRates(error=0.1, decline=0.2, timeout=0.3)
    assert decide(Behavior.APPROVE, rates, Draws(draw)) is outcome


def test_zero_rates_always_approve():
    rng = random.Random(1)
    assert {decide(Behavior.APPROVE, FaultRates(), rng) for _ in range(100)} == {Behavior.APPROVE}


@pytest.mark.parametrize(
    ("value", "fault"),
    [(0.05, "error"), (0.15, "decline"), (0.35, "timeout"), (0.65, None)],
)
def test_the_draw_reports_which_fault_rate_fired(value, fault):
    rates = FaultRates(error=0.1, decline=0.2, timeout=0.3)
    assert draw(Behavior.APPROVE, rates, Draws(value)).fault == fault


def test_a_test_cards_own_behavior_is_no_fault():
    rates = FaultRates(decline=1.0)
    assert draw(Behavior.CARD_DECLINED, rates, Draws()) == (Behavior.CARD_DECLINED, None)


def test_a_seeded_draw_repeats_its_faults():
    rates = FaultRates(error=0.1, decline=0.2, timeout=0.3)
    runs = [[draw(Behavior.APPROVE, rates, rng) for _ in range(200)] for rng in (random.Random(9), random.Random(9))]
    assert runs[0] == runs[1]
    assert {d.fault for d in runs[0]} == {"error", "decline", "timeout", None}
