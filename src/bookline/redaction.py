"""What must never leave the service that owns it: card numbers (the payment gateway's), the guest's
e-mail address and phone number (booking-service's and confirmation-service's), and secrets. One set
of patterns, used by the telemetry pipeline (spans, logs), the store's ingest, the error edge, the
validation of ids and the scans of stored data (``personal_data_kinds``)."""

from __future__ import annotations

import re
from functools import lru_cache

REDACTED = "[REDACTED]"
# A run of digits, maybe grouped by single spaces or dashes, wherever it stands: alone, inside a word
# (x4000056655665556), joined to one by "-" or "_" (u-4111111111111111, guest_5105105105105100). It is a
# card number when its 13 to 19 digits pass the Luhn check (a longer run: when some 13 to 19 of them
# in a row do, a card glued to more digits). The Luhn check keeps most hex apart: a run of fourteen
# digits inside a hex id passes it one time in ten, and ids Bookline makes never hold one; trace ids,
# span ids and digests, which Bookline does not choose, are known by their length (_HEX_VALUE).
_DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,}")
MIN_CARD_DIGITS, MAX_CARD_DIGITS = 13, 19
# what every such run is at least: 13 characters of digits, spaces and dashes from a digit on. A plain
# character class the regular expression engine scans five times faster than _DIGIT_RUN, asked first
_CANDIDATE = re.compile(r"\d[\d -]{12,}")
# an e-mail address, its "@" maybe URL-encoded (a query string: ?to=ana%40example.com)
_EMAIL = re.compile(r"[\w.+-]+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
# A phone number as E.164 writes it: "+", then 8 to 15 digits, the first not 0, maybe grouped by single
# spaces, dashes or dots (+351 912 345 678, +1-415-555-0100); the "+" maybe URL-encoded (%2B). Not when
# a word character or a digit stands right before the "+" (a time zone, 10:00:00+01:00; semver build
# metadata, 1.2.3+20250314; an expression, x+12345678) or right after the last digit (+12345678ms). A
# JSON escape before it (\n, \u000a) is no word: the compact JSON of a span's attributes is looked at
# whole, and "line\n+351912345678" must be found in it as in the string itself.


def _no_word_before(sign: str) -> str:
    """After ``sign``: what stands before it is no word character, or is the end of a JSON escape. The
    expression starts with the sign itself, so that the engine looks only where a "+" is."""
    return rf"(?:(?<!\w{sign})|(?<=\\[bfnrt]{sign})|(?<=\\u[0-9A-Fa-f]{{4}}{sign}))"


_PLUS, _PLUS_ENCODED = r"\+", "%2[Bb]"
_PHONE = re.compile(
    rf"(?:{_PLUS}{_no_word_before(_PLUS)}|{_PLUS_ENCODED}{_no_word_before(_PLUS_ENCODED)})"
    r"[1-9](?:[ .-]?\d){7,14}(?!\w)"
)
_PARAM_NAMES = (
    "number",
    "card",
    "card_number",
    "pan",
    "cvc",
    "cvv",
    "exp_month",
    "exp_year",
    "email",
    "phone",
    "password",
    "secret",
    "token",
)
_SENSITIVE_PARAM = re.compile(rf"\b({'|'.join(_PARAM_NAMES)})=([^&\s]*)", re.IGNORECASE)
_PARAM_NAME_SET = frozenset(_PARAM_NAMES)
# every digit becomes "0" (a digit itself, nothing else is): thirteen of them in a row are a run
_DIGITS_MARKED = bytes.maketrans(b"123456789", b"000000000")
_THIRTEEN_DIGITS = b"0" * MIN_CARD_DIGITS
# a digit doubled by the Luhn check, its two digits summed (6 -> 12 -> 3)
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")
_NO_SEPARATORS = str.maketrans("", "", " -")
# Every answer for a text up to this long is kept: most attribute values of a span are the same from
# span to span (methods, routes, addresses, statements), and looking one up costs a tenth of the
# checks. A value seen once (an id) only passes through the memory, and the longest texts stay out.
_REMEMBERED_UP_TO = 2048


def needs_scrub(text: str) -> bool:
    """Whether ``scrub`` would change the text.

    Runs on every attribute of every span, so it first asks what each pattern cannot do without: a card
    number has at least 13 digits, an e-mail address an "@", a phone number a "+" (or its %2B), a
    sensitive parameter a name before "=".
    Most ids, names and SQL statements have none, and no regular expression tries their every position.
    The answer is remembered: most values repeat in every trace.
    """
    if len(text) <= _REMEMBERED_UP_TO:
        return _needs_scrub_remembered(text)
    return _needs_scrub(text)


def needs_scrub_unremembered(text: str) -> bool:
    """``needs_scrub`` for a text seen once (a span's whole attributes as JSON): not kept in the memory,
    where it would only push out the values that do repeat."""
    return _needs_scrub(text)


@lru_cache(maxsize=8192)
def _needs_scrub_remembered(text: str) -> bool:
    return _needs_scrub(text)


def _needs_scrub(text: str) -> bool:
    return bool(
        _has_sensitive_param(text)
        # one-character searches first (memchr in C): most texts have no "@", "+" or "%" at all
        or (("@" in text or ("%" in text and "%40" in text)) and _EMAIL.search(text))
        or (("+" in text or ("%" in text and ("%2B" in text or "%2b" in text))) and _PHONE.search(text))
        or (could_hold_card_number(text) and _card_spans(text))
    )


def _could_hold_email(text: str) -> bool:
    return "@" in text or ("%" in text and "%40" in text)


def _could_hold_phone(text: str) -> bool:
    return "+" in text or ("%" in text and ("%2B" in text or "%2b" in text))


def could_hold_card_number(text: str) -> bool:
    """Whether the text has the 13 digits in a row (spaces and dashes aside) that a card number needs.

    The cheap question asked before any regular expression: most ids hold a dozen digits or more, but
    scattered (rsv_b8867add0d0e4187b244f153), and an expression tries each of them in Python's regex
    engine. Here bytes.translate marks every digit and drops every separator in C, and one substring
    search looks for thirteen marks in a row.
    """
    if not text.isascii():  # \d also matches the digits of other scripts: let the expression look
        return True
    return _THIRTEEN_DIGITS in text.encode("ascii").translate(_DIGITS_MARKED, b" -")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number (what every card number passes).

    Runs on every long run of digits the redaction meets (a run longer than 19 digits: on each 13 to 19
    of them in a row), so the ASCII case sums bytes in C rather than looping over characters.
    """
    if not digits.isascii():
        return _luhn_valid_any_script(digits)
    raw = digits.encode("ascii")
    kept, doubled = raw[-1::-2], raw[-2::-2].translate(_DOUBLED)
    return (sum(kept) + sum(doubled) - 48 * len(raw)) % 10 == 0


def _luhn_valid_any_script(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_in_digits(digits: str) -> str | None:
    """The card number a run of digits is or holds, or None."""
    length = len(digits)
    if length < MIN_CARD_DIGITS:
        return None
    if length <= MAX_CARD_DIGITS:
        return digits if luhn_valid(digits) else None
    for size in range(MAX_CARD_DIGITS, MIN_CARD_DIGITS - 1, -1):
        for start in range(length - size + 1):
            if luhn_valid(window := digits[start : start + size]):
                return window
    return None


# The hexadecimal values every trace and every digest is full of, which Bookline does not choose:
# span ids (16), trace ids (32), SHA-256 digests (64), and UUIDs (idempotency keys, instance ids).
# Digits inside one are part of the value, not a card (a card number alone is all digits: a value
# must hold a letter to count as one).
_HEX_VALUE = re.compile(
    r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"  # a UUID
    r"|[0-9A-Fa-f]{64}|[0-9A-Fa-f]{32}|[0-9A-Fa-f]{16})(?![0-9A-Fa-f])"
)
_HEX_LETTERS = frozenset("abcdefABCDEF")
# A W3C traceparent (version-trace id-span id-flags) is known by its whole shape, whatever its digits:
# one span id in 1,800 has no hex letter, and its sixteen digits joined to the flags by "-" passed the
# Luhn check of some window often enough to fail an audit of a few hundred queued messages.
_TRACEPARENT = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(?![0-9A-Za-z-])")


def _without_hex_values(text: str) -> str:
    """The text with every traceparent, span id, trace id and digest blanked out (same length, same
    positions)."""
    if "-" in text:
        text = _TRACEPARENT.sub(lambda m: "x" * len(m.group()), text)
    return _HEX_VALUE.sub(lambda m: "x" * len(m.group()) if not _HEX_LETTERS.isdisjoint(m.group()) else m.group(), text)


def _card_spans(text: str) -> list[tuple[int, int, str]]:
    """Where the card numbers of a text stand (start, end) and their digits."""
    if _CANDIDATE.search(text) is None or _DIGIT_RUN.search(text) is None:  # the common case: no such run
        return []
    found = []
    for match in _DIGIT_RUN.finditer(_without_hex_values(text)):
        card = card_in_digits(match.group().translate(_NO_SEPARATORS))
        if card is not None:
            found.append((match.start(), match.end(), card))
    return found


def _has_sensitive_param(text: str) -> bool:
    """``_SENSITIVE_PARAM.search(text)`` without the regex: look only at the word before each "=" (SQL
    has many "=" and no such word before them)."""
    end = text.find("=")
    while end != -1:
        start = end
        while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
            start -= 1
        if text[start:end].lower() in _PARAM_NAME_SET:
            return True
        end = text.find("=", end + 1)
    return False


def looks_like_card_number(text: str) -> bool:
    """Whether the text holds a card number anywhere (what ``scrub`` would redact as one)."""
    return could_hold_card_number(text) and bool(_card_spans(text))


def card_like_numbers(text: str) -> list[str]:
    """The digits of every card number in the text (what ``scrub`` redacts), for the audit's card scan."""
    if not could_hold_card_number(text):
        return []
    return [card for _start, _end, card in _card_spans(text)]


def _without_cards(text: str) -> str:
    spans = _card_spans(text) if could_hold_card_number(text) else []
    if not spans:
        return text
    parts, position = [], 0
    for start, end, _card in spans:
        parts.append(text[position:start])
        parts.append(REDACTED)
        position = end
    parts.append(text[position:])
    return "".join(parts)


def looks_like_email(text: str) -> bool:
    """Whether the text holds an e-mail address anywhere (what ``scrub`` would redact as one)."""
    return _could_hold_email(text) and _EMAIL.search(text) is not None


def looks_like_phone(text: str) -> bool:
    """Whether the text holds a phone number anywhere (what ``scrub`` would redact as one)."""
    return _could_hold_phone(text) and _PHONE.search(text) is not None


PERSONAL_DATA_KINDS = ("card", "email", "phone")


def personal_data_kinds(text: str) -> set[str]:
    """What the text holds of what ``scrub`` redacts by pattern: a subset of {"card", "email", "phone"}.
    The scans of stored data ask this, so that they and the redaction share one definition."""
    kinds = set()
    if looks_like_card_number(text):
        kinds.add("card")
    if looks_like_email(text):
        kinds.add("email")
    if looks_like_phone(text):
        kinds.add("phone")
    return kinds


def scrub(text: str) -> str:
    """Remove card numbers, e-mail addresses, phone numbers and sensitive query parameters from a string."""
    if not needs_scrub(text):
        return text
    text = _SENSITIVE_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _without_cards(text)
    if _could_hold_email(text):
        text = _EMAIL.sub(REDACTED, text)
    if _could_hold_phone(text):
        # "+1 415 555 0100+351912345678": the second "+" follows a digit, no phone, until the first one
        # is gone; once more, until none is left (each pass takes a "+" away)
        while (redacted := _PHONE.sub(REDACTED, text)) != text:
            text = redacted
    return text
