"""Outgoing mail. The embedded default writes each message as an ``.eml`` file under ``mail_dir``;
with ``BOOKLINE_SMTP_URL`` set, :class:`SmtpMailer` hands the same bytes to an SMTP server."""

from __future__ import annotations

import asyncio
import os
import re
import smtplib
import ssl
import tempfile
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import decode_header, make_header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, getaddresses
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from bookline.config import Settings

FROM_ADDRESS = "Bookline <bookings@bookline.example>"
ENVELOPE_SENDER = "bookings@bookline.example"
SMTP_TIMEOUT_S = 10.0
_MESSAGE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
# a line break (or any other control character) in a header value would start a header of its own
_HEADER_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# SMTP caps a line at 1000 octets with its CRLF; a longer one goes out quoted-printable
_MAX_LINE = 998
# non-ASCII text goes out as quoted-printable UTF-8 (readable in the file), ASCII as plain 7bit
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


def compose(*, message_key: str, to: str, subject: str, text: str, html: str | None = None) -> bytes:
    """The RFC 5322 bytes of one e-mail: text/plain alone, or with ``html`` a multipart/alternative
    of the text part then the HTML part.

    ``to`` is one mailbox, a bare address or ``Name <address>`` (as :func:`email.utils.formataddr`
    writes it, its name RFC 2047-encoded or not); a non-ASCII name goes out RFC 2047-encoded. A line
    break in ``to`` or ``subject`` raises :class:`ValueError`: no value can add a header of its own.

    Built with the ``compat32`` classes of :mod:`email` (``MIMEText``): the modern ``EmailMessage``
    parses every header it is given back into a structured value, which made one e-mail cost about
    1.5 ms of CPU, five times as much; what it is written to is the same for these headers.
    """
    if not _MESSAGE_KEY.fullmatch(message_key):
        raise ValueError("a message key is letters, digits, '.', '_' and '-' only")
    _check_header("subject", subject)
    name, address = parse_recipient(to)
    if html is None:
        message = _text_part(text, "plain")
    else:
        message = MIMEMultipart("alternative")
        message.attach(_text_part(text, "plain"))
        message.attach(_text_part(html, "html"))
        for part in message.get_payload():
            del part["MIME-Version"]  # said once, on the message itself
    message["From"] = FROM_ADDRESS
    message["To"] = formataddr((name, address))  # RFC 2047 for a non-ASCII name, the address as is
    message["Subject"] = subject  # compat32 encodes a non-ASCII subject (RFC 2047)
    message["Date"] = format_datetime(datetime.now(UTC))
    # stable per key, so a receiving system can recognise a re-sent copy as the same message
    message["Message-ID"] = f"<{message_key}@bookline.example>"
    return message.as_bytes()


def parse_recipient(to: str) -> tuple[str, str]:
    """(display name, address) of the one mailbox ``to``; :class:`ValueError` if it is not one."""
    _check_header("to", to)
    mailboxes = getaddresses([to])
    if len(mailboxes) != 1:
        raise ValueError("'to' must be exactly one mailbox")
    name, address = mailboxes[0]
    local, at, domain = address.rpartition("@")
    if not (at and local and domain) or not address.isascii() or any(c.isspace() for c in address):
        raise ValueError("'to' has no valid address")
    if name:  # a name formataddr encoded (RFC 2047) back to text, so it is encoded once only
        name = str(make_header(decode_header(name)))
        _check_header("to", name)
    return name, address


def _check_header(field: str, value: str) -> None:
    if _HEADER_UNSAFE.search(value):
        raise ValueError(f"{field!r} must not contain a line break or control character")


def _text_part(body: str, subtype: str) -> MIMEText:
    plain = body.isascii() and all(len(line) <= _MAX_LINE for line in body.splitlines())
    return MIMEText(body, subtype, "us-ascii" if plain else _UTF8)


class Mailer(Protocol):
    async def send(self, *, message_key: str, to: str, subject: str, text: str, html: str | None = None) -> str:
        """Send one e-mail; returns where it went (never the recipient). Raises if it was not sent."""
        ...


class EmlMailer:
    """Writes one RFC 5322 file per ``message_key``.

    Sending the same key again replaces the same file, so a redelivered notification still leaves one
    e-mail per key; the file appears atomically (temp file then ``os.replace``), never half written.
    """

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = Path(mail_dir)

    async def send(self, *, message_key: str, to: str, subject: str, text: str, html: str | None = None) -> str:
        if not _MESSAGE_KEY.fullmatch(message_key):
            raise ValueError("a message key is letters, digits, '.', '_' and '-' only")
        data = compose(message_key=message_key, to=to, subject=subject, text=text, html=html)
        return str(await asyncio.to_thread(self._write, message_key, data))

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


class MailDeliveryError(RuntimeError):
    """The SMTP server could not be reached or did not accept the message (the caller retries).

    Its text names the server and the SMTP reply codes, never the recipient, the body or a password
    (the server's reply text is left out: it often quotes the recipient address)."""


class SmtpMailer:
    """Sends each e-mail to the SMTP server of ``url``:

    ``smtp://host[:port]`` (port 25), ``smtp://user:pass@host:587?starttls=true`` (STARTTLS, then
    login) or ``smtps://host[:port]`` (TLS from the start, port 465); certificates are verified.

    The standard library's :mod:`smtplib` runs in a worker thread (``asyncio.to_thread``): one
    connection per e-mail, which the notification consumer's pace needs no more than, and no
    dependency beyond Python (aiosmtplib would add one for no gain here). Every network step has a
    10 s timeout, so a stuck server costs a worker thread at most that long per step.
    """

    def __init__(self, url: str, *, timeout_s: float = SMTP_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("the SMTP URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("the SMTP URL names no host")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(options) - {"starttls"}
        if unknown:  # a misspelt starttls must not quietly send the password in clear
            raise ValueError(f"unknown SMTP URL option(s): {', '.join(sorted(unknown))}")
        starttls = options.get("starttls", "false").strip().lower()
        if starttls not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError("starttls in the SMTP URL is true or false")
        self.host: str = parts.hostname
        self.port: int = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.implicit_tls = parts.scheme == "smtps"
        self.starttls = starttls in ("true", "1", "yes")
        if self.implicit_tls and self.starttls:
            raise ValueError("smtps:// is TLS already: starttls does not apply")
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # the URL may carry a password: show neither it nor the user
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"SmtpMailer({scheme}://{self.host}:{self.port}{'?starttls=true' if self.starttls else ''})"

    async def send(self, *, message_key: str, to: str, subject: str, text: str, html: str | None = None) -> str:
        data = compose(message_key=message_key, to=to, subject=subject, text=text, html=html)
        _, recipient = parse_recipient(to)
        # SMTP lines end in CRLF; compose writes LF (as the .eml files have it)
        wire = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
        await asyncio.to_thread(self._deliver, recipient, wire)
        return "smtp"

    def _deliver(self, recipient: str, data: bytes) -> None:
        where = f"{self.host}:{self.port}"
        try:
            if self.implicit_tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout_s, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with client:
                if self.starttls:
                    client.starttls(context=ssl.create_default_context())
                if self._username is not None:
                    client.login(self._username, self._password or "")
                client.sendmail(ENVELOPE_SENDER, [recipient], data)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise MailDeliveryError(f"the SMTP server {where} refused the recipient (reply {codes})") from None
        except smtplib.SMTPResponseException as exc:
            raise MailDeliveryError(
                f"the SMTP server {where} answered {exc.smtp_code} ({type(exc).__name__})"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, unreachable, timed out, TLS failed
            # these texts come from smtplib, ssl or the OS (never the server's reply): no recipient in them
            raise MailDeliveryError(
                f"no mail sent through the SMTP server {where}: {type(exc).__name__}: {exc}"
            ) from None


def mailer_from(settings: Settings) -> Mailer:
    """The SMTP mailer when ``smtp_url`` is set, else one ``.eml`` file per e-mail under ``mail_dir``."""
    if settings.smtp_url is not None and settings.smtp_url.get_secret_value().strip():
        return SmtpMailer(settings.smtp_url.get_secret_value().strip())
    return EmlMailer(settings.mail_dir)
