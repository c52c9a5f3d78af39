"""Files that hold secrets: written whole (a reader never sees half a key), readable by their owner
only, in a directory only its owner may enter."""

from __future__ import annotations

import os
from pathlib import Path

SECRET_FILE_MODE = 0o600
SECRET_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed and make it the owner's alone (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=SECRET_DIR_MODE)
    os.chmod(path, SECRET_DIR_MODE)
    return path


def _written_aside(path: Path, content: bytes) -> Path:
    """``content`` in a temporary file beside ``path``, mode 0600 before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def write_secret(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` with mode 0600, atomically: the file appears under its name only
    once it is complete."""
    temporary = _written_aside(path, content)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def create_secret_once(path: Path, content: bytes) -> bool:
    """Write ``content`` to ``path`` unless a file is already there (another process may have won the
    race: its file is kept). True when this call wrote it."""
    if path.exists():
        return False
    temporary = _written_aside(path, content)
    try:
        os.link(temporary, path)  # fails if the name exists: the first writer wins
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
