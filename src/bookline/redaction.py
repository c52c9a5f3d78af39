"""What must never leave the payment gateway: card numbers, and with them e-mail addresses and
secrets. One set of patterns, used by the telemetry pipeline (spans, logs), the error edge and the
validation of ids."""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"
# 13 to 19 digits, maybe grouped by spaces or dashes, standing alone: not a run of digits inside a
# longer word such as a hex id (auth_c57c0259a70394040169751f holds fourteen digits in a row)
_CARD_LIKE = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SENSITIVE_PARAM = re.compile(
    r"\b(number|card|card_number|pan|cvc|cvv|exp_month|exp_year|email|password|secret|token)=([^&\s]*)",
    re.IGNORECASE,
)


# one pass that finds any of the three: most strings contain none, and then nothing else runs
_ANYTHING = re.compile(
    "|".join(f"(?:{p.pattern})" for p in (_CARD_LIKE, _EMAIL, _SENSITIVE_PARAM)), re.IGNORECASE
)


def needs_scrub(text: str) -> bool:
    """Whether ``scrub`` would change the text (one regex search)."""
    return _ANYTHING.search(text) is not None


def looks_like_card_number(text: str) -> bool:
    return bool(_CARD_LIKE.search(text))


def scrub(text: str) -> str:
    """Remove card-like numbers, e-mail addresses and sensitive query parameters from a string."""
    if not _ANYTHING.search(text):
        return text
    text = _SENSITIVE_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _CARD_LIKE.sub(REDACTED, text)
    return _EMAIL.sub(REDACTED, text)
