"""Cards as the gateway sees them, for one instant: the checks on what a client sends to be
tokenized, the brand, and the test cards that decide how an authorization turns out. Pure, no I/O.

Nothing here ever puts a card number, a CVC or an expiry into an error message or a return value:
what survives tokenization is :class:`CardFacts` (last four digits, brand, behaviour).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import NamedTuple

from bookline.domain.errors import InvalidRequest
from bookline.redaction import luhn_valid


class Behavior(StrEnum):
    """How authorizations with a card turn out (stored on the token)."""

    APPROVE = "approve"
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PROCESSING_ERROR = "processing_error"
    SLOW = "slow"  # authorized and committed, but the answer comes late

    @property
    def declines(self) -> bool:
        return self in (Behavior.CARD_DECLINED, Behavior.INSUFFICIENT_FUNDS)


TEST_CARDS: dict[str, Behavior] = {
    "4242424242424242": Behavior.APPROVE,
    "4000000000000002": Behavior.CARD_DECLINED,
    "4000000000009995": Behavior.INSUFFICIENT_FUNDS,
    "4000000000000119": Behavior.PROCESSING_ERROR,
    "4000000000000341": Behavior.SLOW,
}


@dataclass(frozen=True)
class CardFacts:
    """All the gateway keeps of a card."""

    last4: str
    brand: str
    behavior: Behavior


def _invalid(message: str, field: str) -> InvalidRequest:
    return InvalidRequest("invalid_card", message, field=field)


def brand_of(digits: str) -> str:
    if digits.startswith("4"):
        return "visa"
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        return "mastercard"
    if digits[:2] in ("34", "37"):
        return "amex"
    return "unknown"


def _ascii_digits(value: object, *, spaces: bool = False) -> str | None:
    """The digits of a str or int, or None when it holds anything else (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).replace(" ", "") if spaces else str(value)
    return text if text.isascii() and text.isdigit() else None


def examine_card(number: object, exp_month: object, exp_year: object, cvc: object, *, today: date) -> CardFacts:
    """Check a card sent for tokenization and return what may be kept of it.

    Raises ``InvalidRequest`` with code ``invalid_card`` (and the offending ``field``, never its value).
    """
    digits = _ascii_digits(number, spaces=True)
    if digits is None or not 13 <= len(digits) <= 19 or not luhn_valid(digits):
        raise _invalid("the card number is not valid", "number")
    month, year = _ascii_digits(exp_month), _ascii_digits(exp_year)
    if month is None or not 1 <= int(month) <= 12:
        raise _invalid("the expiry month must be 1 to 12", "exp_month")
    if year is None or len(year) not in (2, 4):
        raise _invalid("the expiry year must have 2 or 4 digits", "exp_year")
    full_year = int(year) + (2000 if len(year) == 2 else 0)
    # a card is valid through the last day of its expiry month
    if (full_year, int(month)) < (today.year, today.month):
        raise _invalid("the card has expired", "exp_year")
    cvc_digits = _ascii_digits(cvc)
    if cvc_digits is None or len(cvc_digits) not in (3, 4):
        raise _invalid("the cvc must have 3 or 4 digits", "cvc")
    return CardFacts(
        last4=digits[-4:],
        brand=brand_of(digits),
        behavior=TEST_CARDS.get(digits, Behavior.APPROVE),
    )


@dataclass(frozen=True)
class FaultRates:
    """Shares of approving authorizations that fail anyway, to rehearse the callers' failure paths."""

    decline: float = 0.0
    timeout: float = 0.0
    error: float = 0.0


class Decision(NamedTuple):
    """The outcome of one authorization, and which random fault (if any) made it."""

    outcome: Behavior
    fault: str | None = None  # "error", "decline" or "timeout": the rate that fired


def draw(behavior: Behavior, rates: FaultRates, rng: random.Random) -> Decision:
    """The outcome of one authorization: a test card's own behaviour, or for an approving card a
    random fault at the configured rates (one draw, so a seeded ``rng`` gives a repeatable run)."""
    if behavior is not Behavior.APPROVE:
        return Decision(behavior)
    value = rng.random()
    for fault, rate, outcome in (
        ("error", rates.error, Behavior.PROCESSING_ERROR),
        ("decline", rates.decline, Behavior.CARD_DECLINED),
        ("timeout", rates.timeout, Behavior.SLOW),
    ):
        if value < rate:
            return Decision(outcome, fault)
        value -= rate
    return Decision(Behavior.APPROVE)


def decide(behavior: Behavior, rates: FaultRates, rng: random.Random) -> Behavior:
    """The outcome of :func:`draw`, without which fault made it."""
    return draw(behavior, rates, rng).outcome
