"""Outgoing mail. The embedded default writes each message as an ``.eml`` file under ``mail_dir``
(scale-out would put an SMTP adapter behind the same ``send``)."""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

FROM_ADDRESS = "Bookline <bookings@bookline.example>"
_MESSAGE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class Mailer(Protocol):
    async def send(self, *, message_key: str, to: str, subject: str, text: str) -> Path: ...


class EmlMailer:
    """Writes one RFC 5322 file per ``message_key``.

    Sending the same key again replaces the same file, so a redelivered notification still leaves one
    e-mail per key; the file appears atomically (temp file then ``os.replace``), never half written.
    """

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = Path(mail_dir)

    async def send(self, *, message_key: str, to: str, subject: str, text: str) -> Path:
        if not _MESSAGE_KEY.fullmatch(message_key):
            raise ValueError("a message key is letters, digits, '.', '_' and '-' only")
        message = EmailMessage()
        message["From"] = FROM_ADDRESS
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.now(UTC))
        # stable per key, so a receiving system can recognise a re-sent copy as the same message
        message["Message-ID"] = f"<{message_key}@bookline.example>"
        message.set_content(text)
        return await asyncio.to_thread(self._write, message_key, message.as_bytes())

    def _write(self, message_key: str, data: bytes) -> Path:
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        target = self.mail_dir / f"{message_key}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.mail_dir, prefix=f".{message_key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
