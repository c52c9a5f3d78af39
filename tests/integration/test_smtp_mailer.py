"""SmtpMailer against a real SMTP server (aiosmtpd on loopback), and the choice of mailer."""

from __future__ import annotations

import email
import re
import socket
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from bookline.adapters.mail import (
    ENVELOPE_SENDER,
    EmlMailer,
    MailDeliveryError,
    SmtpMailer,
    compose,
    mailer_from,
)
from bookline.config import Settings

GUEST = "guest-u_1@guests.bookline.example"
TO = formataddr(("José Ñúñez", GUEST))
SUBJECT = "Your booking BK7Q2XZ is confirmed"
TEXT = "Hello José Ñúñez,\n\nyour booking is confirmed.\n\n.a line that starts with a dot\n"
HTML = "<p>Hello José Ñúñez,</p>\n<p>Your booking is confirmed.</p>\n"


class Collecting:
    """Accepts every message and keeps its envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


class RefusingRecipients(Collecting):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return f"550 5.1.1 <{address}>: recipient unknown"


class RefusingData(Collecting):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "554 5.7.1 message rejected"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(handler: Collecting, **kwargs: Any) -> Controller:
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def server() -> Iterator[tuple[Controller, Collecting]]:
    handler = Collecting()
    controller = start(handler)
    try:
        yield controller, handler
    finally:
        controller.stop()


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def stored(wire: bytes) -> EmailMessage:
    """A message as received over SMTP, every line ending in CRLF, as a mailbox stores it (LF)."""
    assert re.search(rb"(?<!\r)\n", wire) is None, "a bare LF went over the wire"
    assert re.search(rb"\r(?!\n)", wire) is None, "a bare CR went over the wire"
    return parsed(wire.replace(b"\r\n", b"\n"))


def content_of(message: EmailMessage) -> dict[str, Any]:
    """What a reader sees of a message (Date left out: each compose stamps its own)."""
    return {
        "from": str(message["From"]),
        "to": [(a.display_name, a.addr_spec) for a in message["To"].addresses],
        "subject": str(message["Subject"]),
        "message_id": str(message["Message-ID"]),
        "type": message.get_content_type(),
        "parts": [(p.get_content_type(), p.get_content()) for p in message.iter_parts()],
    }


async def test_the_server_receives_what_compose_builds(server: tuple[Controller, Collecting]):
    controller, handler = server
    mailer = SmtpMailer(f"smtp://127.0.0.1:{controller.port}")

    where = await mailer.send(message_key="bk_1-confirmed", to=TO, subject=SUBJECT, text=TEXT, html=HTML)

    assert where == "smtp"
    assert len(handler.envelopes) == 1
    envelope = handler.envelopes[0]
    assert envelope.mail_from == ENVELOPE_SENDER
    assert envelope.rcpt_tos == [GUEST]
    received = stored(envelope.original_content)
    expected = parsed(compose(message_key="bk_1-confirmed", to=TO, subject=SUBJECT, text=TEXT, html=HTML))
    assert content_of(received) == content_of(expected)
    assert content_of(received)["parts"] == [("text/plain", TEXT), ("text/html", HTML)]
    assert received["Date"] is not None


async def test_a_text_only_email_goes_out_as_text_plain(server: tuple[Controller, Collecting]):
    controller, handler = server

    await SmtpMailer(f"smtp://127.0.0.1:{controller.port}").send(
        message_key="bk_2-cancelled", to=GUEST, subject="Cancelled", text="Bye\n"
    )

    (envelope,) = handler.envelopes
    message = stored(envelope.original_content)
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Bye\n"
    assert envelope.rcpt_tos == [GUEST]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_credentials_in_the_url_log_in(tmp_path: Path):
    seen: list[tuple[str, bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        seen.append((mechanism, data.login, data.password))
        ok = data.login == b"bookline@example.org" and data.password == b"p@ss:w/rd"
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 235 or 535

    handler = Collecting()
    controller = start(handler, authenticator=authenticator, auth_required=True, auth_require_tls=False)
    try:
        good = SmtpMailer(f"smtp://bookline%40example.org:p%40ss%3Aw%2Frd@127.0.0.1:{controller.port}")
        await good.send(message_key="bk_3-confirmed", to=TO, subject=SUBJECT, text=TEXT)
        assert [(login, password) for _, login, password in seen] == [(b"bookline@example.org", b"p@ss:w/rd")]
        assert len(handler.envelopes) == 1

        bad = SmtpMailer(f"smtp://bookline%40example.org:wrong-secret@127.0.0.1:{controller.port}")
        with pytest.raises(MailDeliveryError) as failure:
            await bad.send(message_key="bk_3-confirmed", to=TO, subject=SUBJECT, text=TEXT)
        assert "535" in str(failure.value)
        assert "wrong-secret" not in str(failure.value) and "wrong-secret" not in repr(bad)
        assert len(handler.envelopes) == 1
    finally:
        controller.stop()


@pytest.mark.parametrize("handler", [RefusingRecipients(), RefusingData()], ids=["rcpt-550", "data-554"])
async def test_a_refusing_server_makes_send_raise_without_naming_the_guest(handler: Collecting):
    controller = start(handler)
    try:
        with pytest.raises(MailDeliveryError) as failure:
            await SmtpMailer(f"smtp://127.0.0.1:{controller.port}").send(
                message_key="bk_4-confirmed", to=TO, subject=SUBJECT, text=TEXT, html=HTML
            )
    finally:
        controller.stop()
    assert handler.envelopes == []
    message = str(failure.value)
    assert ("550" if isinstance(handler, RefusingRecipients) else "554") in message
    assert GUEST not in message and "guest-u_1" not in message
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


async def test_a_stopped_server_makes_send_raise():
    handler = Collecting()
    controller = start(handler)
    port = controller.port
    controller.stop()

    with pytest.raises(MailDeliveryError, match=f"127.0.0.1:{port}"):
        await SmtpMailer(f"smtp://127.0.0.1:{port}").send(
            message_key="bk_5-confirmed", to=GUEST, subject=SUBJECT, text=TEXT
        )


async def test_starttls_asked_of_a_server_without_it_sends_nothing(server: tuple[Controller, Collecting]):
    controller, handler = server

    with pytest.raises(MailDeliveryError, match="SMTPNotSupportedError"):
        await SmtpMailer(f"smtp://user:secret@127.0.0.1:{controller.port}?starttls=true").send(
            message_key="bk_6-confirmed", to=GUEST, subject=SUBJECT, text=TEXT
        )
    assert handler.envelopes == []


async def test_a_bad_recipient_is_refused_before_connecting(server: tuple[Controller, Collecting]):
    controller, handler = server
    mailer = SmtpMailer(f"smtp://127.0.0.1:{controller.port}")

    for to in (f"{GUEST}\r\nBcc: victim@example.org", f"{GUEST}, victim@example.org"):
        with pytest.raises(ValueError):
            await mailer.send(message_key="bk_7-confirmed", to=to, subject=SUBJECT, text=TEXT)
    with pytest.raises(ValueError):
        await mailer.send(message_key="bk_7-confirmed", to=GUEST, subject="a\nBcc: victim@example.org", text=TEXT)
    assert handler.envelopes == []


@pytest.mark.parametrize(
    ("url", "host", "port", "implicit_tls", "starttls"),
    [
        ("smtp://127.0.0.1:8025", "127.0.0.1", 8025, False, False),
        ("smtp://mail.example.org", "mail.example.org", 25, False, False),
        ("smtp://user:pass@mail.example.org:587?starttls=true", "mail.example.org", 587, False, True),
        ("smtps://mail.example.org", "mail.example.org", 465, True, False),
    ],
)
def test_the_smtp_url_is_read(url: str, host: str, port: int, implicit_tls: bool, starttls: bool):
    mailer = SmtpMailer(url)

    assert (mailer.host, mailer.port, mailer.implicit_tls, mailer.starttls) == (host, port, implicit_tls, starttls)
    assert "pass" not in repr(mailer)


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.org",
        "smtp://",
        "smtp://host?startls=true",
        "smtp://host?starttls=maybe",
        "smtps://h?starttls=1",
    ],
)
def test_a_bad_smtp_url_is_refused(url: str):
    with pytest.raises(ValueError):
        SmtpMailer(url)


# --- which mailer ------------------------------------------------------------------------------


def test_mailer_from_picks_smtp_when_the_url_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BOOKLINE_SMTP_URL", "smtp://user:s3cret-pw@127.0.0.1:2525")
    settings = Settings(data_dir=tmp_path)

    mailer = mailer_from(settings)

    assert isinstance(mailer, SmtpMailer)
    assert (mailer.host, mailer.port) == ("127.0.0.1", 2525)
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings.model_dump())
    assert "s3cret-pw" not in repr(mailer)


def test_mailer_from_writes_files_when_no_url_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("BOOKLINE_SMTP_URL", raising=False)

    mailer = mailer_from(Settings(data_dir=tmp_path))

    assert isinstance(mailer, EmlMailer)
    assert mailer.mail_dir == tmp_path / "mail"


async def test_the_eml_mailer_writes_both_parts_to_one_file_per_key(tmp_path: Path):
    mailer = EmlMailer(tmp_path / "mail")

    first = await mailer.send(message_key="bk_8-confirmed", to=TO, subject=SUBJECT, text=TEXT, html=HTML)
    again = await mailer.send(message_key="bk_8-confirmed", to=TO, subject=SUBJECT, text=TEXT, html=HTML)

    assert first == again == str(tmp_path / "mail" / "bk_8-confirmed.eml")
    assert sorted(p.name for p in (tmp_path / "mail").iterdir()) == ["bk_8-confirmed.eml"]
    message = parsed(Path(first).read_bytes())
    assert content_of(message)["parts"] == [("text/plain", TEXT), ("text/html", HTML)]
    assert content_of(message)["to"] == [("José Ñúñez", GUEST)]
