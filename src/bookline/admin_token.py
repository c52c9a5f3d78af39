"""The admin token: the bearer secret of every service's read-only ``/admin`` endpoints, which
``bookline audit`` reads.

It comes from the ``admin_token`` setting (``BOOKLINE_ADMIN_TOKEN``) when that is set. Otherwise
``bookline up`` keeps one in ``DATA_DIR/admin.token`` (created on its first run, readable by its owner
only) and hands it to every service it starts, so an audit run from the same data directory finds it
without being told. The token itself is never printed, logged, traced or echoed in an error.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    # written beside the target and renamed: a reader never sees half a token, and the mode is set
    # before any byte of the secret is on disk
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return token
