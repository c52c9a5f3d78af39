"""Human-friendly confirmation codes: no 0/O, 1/I/L to misread over the phone."""

from __future__ import annotations

import secrets

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_confirmation_code() -> str:
    """``BKL-XXXX-XXXX``: 31^8 (about 8.5e11) codes; uniqueness is enforced by the database."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(8))
    return f"BKL-{chars[:4]}-{chars[4:]}"
