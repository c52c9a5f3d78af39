"""The admin token: the bearer secret of every service's read-only ``/admin`` endpoints, which
``bookline audit`` reads.

It comes from the ``admin_token`` setting (``BOOKLINE_ADMIN_TOKEN``) when that is set. Otherwise
``bookline up`` keeps one in ``DATA_DIR/admin.token`` (created on its first run, readable by its owner
only) and hands it to every service it starts, so an audit run from the same data directory finds it
without being told. The token itself is never printed, logged, traced or echoed in an error.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from bookline.auth.files import write_secret
from bookline.config import Settings

TOKEN_BYTES = 32


def resolve_admin_token(settings: Settings) -> str | None:
    """The admin token in force: the setting, else the token file; None when there is neither."""
    if settings.admin_token is not None:
        value = settings.admin_token.get_secret_value().strip()
        return value or None
    return read_token_file(settings.admin_token_path)


def read_token_file(path: Path) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return value or None


def ensure_admin_token(settings: Settings) -> str:
    """The admin token ``bookline up`` gives its services: the setting, else the token file, which
    is created (mode 0600) with a fresh random token when it is missing or empty."""
    found = resolve_admin_token(settings)
    if found is not None:
        return found
    path = settings.admin_token_path
    token = secrets.token_urlsafe(TOKEN_BYTES)
    write_secret(path, (token + "\n").encode())
    return token
