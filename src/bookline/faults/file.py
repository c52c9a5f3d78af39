"""The fault file on disk: read by every service on each use, written by ``bookline faults``.

Reading is cheap enough for every request: :meth:`FaultFile.current` stats the file and parses it
again only when it changed. A missing file means no faults. A file that fails to parse (a bad hand
edit) keeps the last good faults in force and is reported once per change, so a typo never turns
every fault off, or on, by surprise. Writes go to a temporary file that replaces the old one, so a
reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

import yaml

from bookline.faults.model import FaultError, Faults, parse_document, parse_value, with_values

log = logging.getLogger("bookline.faults")

HEADER = (
    "# Bookline faults, re-read by every service while it runs.\n"
    "# Change them with `bookline faults set KEY=VALUE ...`, `bookline faults clear`.\n"
)

# what identifies one version of the file: os.replace gives every write a new inode, so two writes
# of the same size within the clock's resolution still differ
_Signature = tuple[int, int, int]


class FaultFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._signature: _Signature | None = None
        self._faults = Faults()

    def current(self) -> Faults:
        """The faults in force: the file's, re-read when it changed since the last call."""
        signature = self._stat()
        if signature == self._signature:
            return self._faults
        with self._lock:
            if signature == self._signature:
                return self._faults
            if signature is None:
                self._faults = Faults()
            else:
                try:
                    self._faults = self._read()
                except (ValueError, OSError, yaml.YAMLError) as exc:  # FaultError is a ValueError
                    # once per change of the file: the signature is remembered below
                    log.warning("fault file %s is not valid, keeping the faults in force: %s", self.path, _reason(exc))
            self._signature = signature
            return self._faults

    def read(self) -> Faults:
        """The file's faults, strictly: raises :class:`FaultError` when the file is not valid."""
        if not self.path.exists():
            return Faults()
        try:
            return self._read()
        except FaultError:
            raise
        except (ValueError, OSError, yaml.YAMLError) as exc:  # undecodable bytes, unreadable, not YAML
            raise FaultError(f"{self.path} cannot be read: {_reason(exc)}") from None

    def set(self, assignments: dict[str, str]) -> Faults:
        """Set (``"0.2"``) or unset (``""``, ``"none"``) faults by dotted key; all or nothing.

        Raises :class:`FaultError` naming the key for a bad key or value; the file is then unchanged.
        """
        values = {key: parse_value(key, text) for key, text in assignments.items()}
        try:
            in_force = self.read()
        except FaultError as exc:
            raise FaultError(f"{self.path} is not valid ({exc}); fix it or clear it first") from None
        faults = with_values(in_force, values)
        self.write(faults)
        return faults

    def clear(self) -> None:
        """Turn every fault off."""
        self.write(Faults())

    def write(self, faults: Faults) -> None:
        document = faults.to_document()
        text = HEADER + (yaml.safe_dump(document, sort_keys=False) if document else "{}\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".faults-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), 0o644)  # mkstemp makes it private; a service may run as another user
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _read(self) -> Faults:
        return parse_document(yaml.safe_load(self.path.read_text(encoding="utf-8")))

    def _stat(self) -> _Signature | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"YAML error at line {exc.problem_mark.line + 1}: {exc.problem}"
    return str(exc)
