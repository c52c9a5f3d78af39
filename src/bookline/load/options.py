"""The options of ``bookline load``, parsed and checked before anything is sent.

Every problem is an :class:`OptionError` whose message names the option, so the command can exit 2
with it. Card numbers are options too (``--cards``), so nothing here ever puts one into a message, a
repr or the run's configuration as reported: a card is known by its label and last four digits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from bookline.load.customers import pool_size

OPERATIONS = ("search", "book", "cancel", "duplicate")
DEFAULT_MIX = "search=60,book=30,cancel=5,duplicate=5"
DEFAULT_CARDS = "approve=90,decline=5,insufficient_funds=5"
# a run plans every arrival up front: this keeps a typo such as --rate 1e9 from eating the memory
MAX_ARRIVALS = 2_000_000

# the gateway stand-in's test cards, by what they do (README "Test cards")
TEST_CARDS: dict[str, str] = {
    "approve": "4242424242424242",
    "decline": "4000000000000002",
    "insufficient_funds": "4000000000009995",
    "gateway_error": "4000000000000119",  # the gateway answers 500
    "slow": "4000000000000341",  # authorized, but the answer comes after the caller's timeout
}
_LABEL_OF_NUMBER = {number: label for label, number in TEST_CARDS.items()}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class OptionError(ValueError):
    """A bad option of ``bookline load``: the command prints the message and exits 2."""


@dataclass(frozen=True)
class Card:
    """A card the load tokenizes at the gateway. Only :attr:`label` and :attr:`last4` are ever shown."""

    label: str
    number: str = field(repr=False)

    @property
    def last4(self) -> str:
        return self.number[-4:]


@dataclass(frozen=True)
class LoadOptions:
    rate: float
    duration_s: float
    concurrency: int
    mix: dict[str, float]
    hot_rooms: int
    hot_share: float
    cards: tuple[tuple[Card, float], ...]
    url: str
    gateway_url: str
    timeout_s: float
    seed: int | None = None

    @property
    def arrivals(self) -> int:
        return arrival_count(self.rate, self.duration_s)

    @property
    def customers(self) -> int:
        """How many simulated customers the bookings are dealt over (see :mod:`.customers`)."""
        return pool_size(self.arrivals)

    def config_view(self) -> dict[str, Any]:
        """The options as reported (table and JSON): cards by label, never by number."""
        return {
            "url": self.url,
            "gateway_url": self.gateway_url,
            "rate": self.rate,
            "duration_s": self.duration_s,
            "concurrency": self.concurrency,
            "mix": dict(self.mix),
            "hot_rooms": self.hot_rooms,
            "hot_share": self.hot_share,
            "cards": {card.label: weight for card, weight in self.cards},
            "timeout_s": self.timeout_s,
            "seed": self.seed,
            "arrivals": self.arrivals,
            "customers": self.customers,
        }


def arrival_count(rate: float, duration_s: float) -> int:
    """How many arrivals a constant rate makes in a duration: one at 0, then one every 1/rate seconds,
    all strictly before the end (the epsilon keeps 20/s over 3 s at 60, not 61, despite float error)."""
    return max(0, math.ceil(rate * duration_s - 1e-9))


def _weights(text: str, *, option: str, what: str) -> list[tuple[str, float]]:
    """``a=1,b=2`` as pairs, each weight a finite number >= 0, at least one of them > 0."""
    pairs: list[tuple[str, float]] = []
    seen: set[str] = set()
    entries = [e.strip() for e in text.split(",")]
    if not text.strip() or any(not e for e in entries):
        raise OptionError(f"{option}: expected {what}=WEIGHT pairs separated by commas, e.g. {_example(option)}")
    for position, entry in enumerate(entries, start=1):
        name, sep, weight_text = entry.partition("=")
        name = name.strip()
        if not sep or not name:
            raise OptionError(f"{option}: entry {position} is not {what}=WEIGHT (e.g. {_example(option)})")
        try:
            weight = float(weight_text)
        except ValueError:
            raise OptionError(f"{option}: the weight of entry {position} is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise OptionError(f"{option}: the weight of entry {position} must be a number >= 0")
        if name in seen:
            raise OptionError(f"{option}: entry {position} repeats an earlier one")
        seen.add(name)
        pairs.append((name, weight))
    if sum(w for _, w in pairs) <= 0:
        raise OptionError(f"{option}: at least one weight must be greater than 0")
    return pairs


def _example(option: str) -> str:
    return DEFAULT_MIX if option == "--mix" else DEFAULT_CARDS


def parse_mix(text: str) -> dict[str, float]:
    """``search=60,book=30,cancel=5,duplicate=5``: the share of each operation among the arrivals.
    An operation left out gets no arrival; the weights need not add up to 100."""
    mix = dict.fromkeys(OPERATIONS, 0.0)
    for position, (name, weight) in enumerate(_weights(text, option="--mix", what="OPERATION"), start=1):
        if name not in mix:
            # echo only what looks like a name: a pasted card number must not reach the terminal
            shown = repr(name) if _NAME.match(name) and len(name) <= 40 else f"in entry {position}"
            raise OptionError(f"--mix: unknown operation {shown}; the operations are {', '.join(OPERATIONS)}")
        mix[name] = weight
    return mix


def parse_cards(text: str) -> tuple[tuple[Card, float], ...]:
    """``approve=90,decline=5`` or ``4242424242424242=90,...``: the test cards to tokenize and their
    shares. A number not among the test cards is used as given (the gateway decides what it does)."""
    cards: list[tuple[Card, float]] = []
    labels: set[str] = set()
    for position, (key, weight) in enumerate(_weights(text, option="--cards", what="CARD"), start=1):
        digits = key.replace(" ", "")
        if digits.isascii() and digits.isdigit():
            if not 12 <= len(digits) <= 19:
                raise OptionError(f"--cards: the card number of entry {position} must have 12 to 19 digits")
            card = Card(_LABEL_OF_NUMBER.get(digits, f"card_{digits[-4:]}"), digits)
        elif key in TEST_CARDS:
            card = Card(key, TEST_CARDS[key])
        else:
            # the key may be a mistyped card number: never echo it
            raise OptionError(
                f"--cards: entry {position} is neither a test card ({', '.join(TEST_CARDS)}) nor a card number"
            )
        if card.label in labels:
            raise OptionError(f"--cards: entry {position} names a card already given")
        labels.add(card.label)
        if weight > 0:
            cards.append((card, weight))
    return tuple(cards)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``30s``, ``2m``, ``1h``, ``500ms`` or plain seconds (``45``, ``2.5``), as seconds > 0."""
    match = _DURATION.match(text)
    if match is None:
        raise OptionError(f"--duration: {text!r} is not a duration (e.g. 30s, 2m, or a number of seconds)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise OptionError("--duration: must be longer than 0")
    return seconds


def build_options(
    *,
    rate: float,
    duration: str,
    concurrency: int,
    mix: str,
    hot_rooms: int,
    hot_share: float | None,
    cards: str,
    url: str,
    gateway_url: str,
    timeout_s: float,
    seed: int | None,
) -> LoadOptions:
    """All options checked together; the first problem found is raised as an :class:`OptionError`."""
    if not math.isfinite(rate) or rate <= 0:
        raise OptionError("--rate: must be a number of arrivals per second greater than 0")
    duration_s = parse_duration(duration)
    if concurrency < 1:
        raise OptionError("--concurrency: must be at least 1")
    if hot_rooms < 0:
        raise OptionError("--hot-rooms: must be 0 or more")
    if hot_share is None:
        hot_share = 0.5 if hot_rooms > 0 else 0.0
    if not math.isfinite(hot_share) or not 0 <= hot_share <= 1:
        raise OptionError("--hot-share: must be between 0 and 1")
    if hot_share > 0 and hot_rooms == 0:
        raise OptionError("--hot-share: needs --hot-rooms K with K > 0")
    if not math.isfinite(timeout_s) or timeout_s <= 0:
        raise OptionError("--timeout: must be a number of seconds greater than 0")
    for option, value in (("--url", url), ("--gateway-url", gateway_url)):
        if not value.startswith(("http://", "https://")):
            raise OptionError(f"{option}: {value!r} is not an http:// or https:// URL")
    if arrival_count(rate, duration_s) > MAX_ARRIVALS:
        raise OptionError(f"--rate x --duration: more than {MAX_ARRIVALS:,} arrivals in one run")
    parsed_cards = parse_cards(cards)
    if not parsed_cards:
        raise OptionError("--cards: at least one card must have a weight greater than 0")
    return LoadOptions(
        rate=rate,
        duration_s=duration_s,
        concurrency=concurrency,
        mix=parse_mix(mix),
        hot_rooms=hot_rooms,
        hot_share=hot_share,
        cards=parsed_cards,
        url=url.rstrip("/"),
        gateway_url=gateway_url.rstrip("/"),
        timeout_s=timeout_s,
        seed=seed,
    )
