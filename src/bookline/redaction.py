"""What must never leave the payment gateway: card numbers, and with them e-mail addresses and
secrets. One set of patterns, used by the telemetry pipeline (spans, logs), the error edge and the
validation of ids."""

from __future__ import annotations

import re
from functools import lru_cache

REDACTED = "[REDACTED]"
# 13 to 19 digits, maybe grouped by spaces or dashes, standing alone: not a run of digits inside a
# longer word such as a hex id (auth_c57c0259a70394040169751f holds fourteen digits in a row)
_CARD_LIKE = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
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
    "password",
    "secret",
    "token",
)
_SENSITIVE_PARAM = re.compile(rf"\b({'|'.join(_PARAM_NAMES)})=([^&\s]*)", re.IGNORECASE)
_PARAM_NAME_SET = frozenset(_PARAM_NAMES)
# any of the three in one pass, for text beyond ASCII (where \d and \w also match other scripts)
_ANYTHING = re.compile("|".join(f"(?:{p.pattern})" for p in (_CARD_LIKE, _EMAIL, _SENSITIVE_PARAM)), re.IGNORECASE)
_NO_DIGITS = str.maketrans("", "", "0123456789")
_NO_SEPARATORS = str.maketrans("", "", " -")
_MIN_CARD_DIGITS = 13
# texts this long are mostly SQL statements, the same few dozen in every trace: their answer is kept
_REMEMBERED_FROM = 80


def needs_scrub(text: str) -> bool:
    """Whether ``scrub`` would change the text.

    Runs on every attribute of every span, so it first asks what each pattern cannot do without: a card
    number has at least 13 digits, an e-mail address an "@", a sensitive parameter a name before "=".
    Most ids, names and SQL statements have none, and no regular expression tries their every position.
    The answer for a long text is remembered: the statements of a service repeat in every trace.
    """
    if len(text) >= _REMEMBERED_FROM:
        return _needs_scrub_remembered(text)
    return _needs_scrub(text)


@lru_cache(maxsize=2048)
def _needs_scrub_remembered(text: str) -> bool:
    return _needs_scrub(text)


def _needs_scrub(text: str) -> bool:
    if not text.isascii():
        return _ANYTHING.search(text) is not None
    return bool(
        _has_sensitive_param(text)
        or ("@" in text and _EMAIL.search(text))
        or (len(text) - len(text.translate(_NO_DIGITS)) >= _MIN_CARD_DIGITS and _CARD_LIKE.search(text))
    )


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
    return bool(_CARD_LIKE.search(text))


def card_like_numbers(text: str) -> list[str]:
    """The digits of every card-like number in the text (what ``scrub`` would redact), for a check
    that must also ask whether each one is a real card number (the audit's card scan)."""
    if text.isascii() and len(text) - len(text.translate(_NO_DIGITS)) < _MIN_CARD_DIGITS:
        return []
    return [m.group().translate(_NO_SEPARATORS) for m in _CARD_LIKE.finditer(text)]


def scrub(text: str) -> str:
    """Remove card-like numbers, e-mail addresses and sensitive query parameters from a string."""
    if not needs_scrub(text):
        return text
    text = _SENSITIVE_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _CARD_LIKE.sub(REDACTED, text)
    return _EMAIL.sub(REDACTED, text)
