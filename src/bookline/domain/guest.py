"""The guest a stay is booked for: personal data.

Kept by booking-service and confirmation-service only, and shown to the booking's owner. It never
goes into a span, log line, metric, error, queue message or another service's database; even its
``repr`` hides it, so that a debug print of a request cannot leak it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email

from bookline.redaction import looks_like_card_number

MAX_NAME_LENGTH = 100
MAX_EMAIL_LENGTH = 254
# E.164: "+", a country code and subscriber number, 8 to 15 digits in all, no separators
PHONE = r"^\+[1-9][0-9]{7,14}$"
_PHONE = re.compile(PHONE)


@dataclass(frozen=True)
class Guest:
    name: str = field(repr=False)
    email: str = field(repr=False)
    phone: str | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "email": self.email, "phone": self.phone}


# Every message below is fixed: a refusal never repeats what it refused.


def guest_name(value: str) -> str:
    """A guest's name as written (any script), trimmed; no control characters, no card number."""
    name = " ".join(value.split())
    if not name:
        raise ValueError("must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"must be at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise ValueError("must not contain control characters")
    if "@" in name or looks_like_card_number(name):
        raise ValueError("must be a name")
    return name


def guest_email(value: str) -> str:
    """An e-mail address, its domain normalised (the mailbox part as the guest wrote it)."""
    if len(value) > MAX_EMAIL_LENGTH:
        raise ValueError(f"must be at most {MAX_EMAIL_LENGTH} characters")
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("must be an e-mail address") from None
    return checked.normalized


def guest_phone(value: str) -> str:
    if not _PHONE.match(value):
        raise ValueError("must be a phone number in E.164 form, such as +351912345678")
    return value


def same_email(a: str, b: str) -> bool:
    """Whether two addresses name the same mailbox, as a guest would expect (case does not matter)."""
    return a.strip().casefold() == b.strip().casefold()
