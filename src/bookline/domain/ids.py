"""The one format of every id Bookline makes or accepts, and how new ones are made.

Ids Bookline makes are a prefix and lowercase hex; an id that holds a card-like digit run is never
made (a new one is drawn) and never accepted, so no card number can ride into a database, a span or
a mail file name inside an id.
"""

from __future__ import annotations

import secrets

from bookline.redaction import looks_like_card_number

BOOKING_ID = r"^bk_[0-9a-f]{24}$"
RESERVATION_ID = r"^rsv_[0-9a-f]{24}$"
AUTHORIZATION_ID = r"^auth_[0-9a-f]{24}$"
CARD_TOKEN = r"^tok_[0-9a-f]{24}$"
QUOTE_ID = r"^q_[0-9a-f]{24}$"
# inventory ids come from the hotel's own systems: lowercase words and digits joined by hyphens
PROPERTY_ID = r"^[a-z][a-z0-9-]{0,39}$"
ROOM_ID = r"^[a-z][a-z0-9-]{0,59}$"
# a kind of room (single, double, twin, family, suite, ...): a lowercase word, maybe with _ or -
ROOM_TYPE = r"^[a-z][a-z_-]{0,39}$"
CONFIRMATION_CODE = r"^BKL-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}$"


def _new(prefix: str, hex_chars: int) -> str:
    while True:
        candidate = prefix + secrets.token_hex(hex_chars // 2)
        if not looks_like_card_number(candidate):
            return candidate


def new_booking_id() -> str:
    return _new("bk_", 24)


def new_reservation_id() -> str:
    return _new("rsv_", 24)


def new_authorization_id() -> str:
    return _new("auth_", 24)


def new_card_token() -> str:
    return _new("tok_", 24)


def new_quote_id() -> str:
    return _new("q_", 24)


def refuse_card_number(value: str) -> str:
    """For validators: an id, a user id or a code that looks like a card number is refused."""
    if looks_like_card_number(value):
        raise ValueError("must not look like a card number")
    return value
