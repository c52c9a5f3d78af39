"""The bytes of an e-mail, as any mail reader parses them back."""

from __future__ import annotations

import email
from email import policy
from email.utils import formataddr

import pytest

from bookline.adapters.mail import FROM_ADDRESS, compose, parse_recipient


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def test_an_ascii_email_reads_back_with_its_headers_and_text():
    data = compose(message_key="bk_1-confirmed", to="guest-u_1@guests.bookline.example", subject="Booked", text="Hi\n")

    message = parsed(data)
    assert message["From"] == FROM_ADDRESS
    assert message["To"] == "guest-u_1@guests.bookline.example"
    assert message["Subject"] == "Booked"
    assert message["Message-ID"] == "<bk_1-confirmed@bookline.example>"
    assert message["Date"] is not None
    assert message.get_content() == "Hi\n"
    assert message.get_content_type() == "text/plain"


def test_non_ascii_subject_and_text_survive_encoding():
    text = "Séjour à Lisboa: 2 nuits\n"
    data = compose(message_key="bk_2-confirmed", to="guest-u_2@guests.bookline.example", subject="Réservé ✓", text=text)

    assert data.isascii()  # RFC 2047 subject, quoted-printable body
    message = parsed(data)
    assert message["Subject"] == "Réservé ✓"
    assert message.get_content() == text


def test_with_html_the_email_is_multipart_alternative_text_first():
    text, html = "Séjour confirmé\n", "<p>Séjour <b>confirmé</b></p>\n"
    data = compose(message_key="bk_3-confirmed", to="guest@example.org", subject="Booked", text=text, html=html)

    assert data.isascii()
    message = parsed(data)
    assert message.get_content_type() == "multipart/alternative"
    assert message["MIME-Version"] == "1.0"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
    assert [p["Content-Transfer-Encoding"] for p in parts] == ["quoted-printable", "quoted-printable"]
    assert [p.get_content() for p in parts] == [text, html]
    assert all(p["MIME-Version"] is None for p in parts)
    assert message["Message-ID"] == "<bk_3-confirmed@bookline.example>"


def test_an_ascii_body_with_an_overlong_line_goes_out_quoted_printable():
    text = "x" * 2000 + "\n"
    data = compose(message_key="bk_4-confirmed", to="guest@example.org", subject="Long", text=text)

    assert max(len(line) for line in data.splitlines()) <= 998
    assert parsed(data).get_content() == text


@pytest.mark.parametrize(
    "to",
    [
        formataddr(("José Ñúñez", "jose@example.org")),  # RFC 2047-encoded by formataddr
        "José Ñúñez <jose@example.org>",  # or not
    ],
)
def test_a_non_ascii_name_in_to_is_encoded_once_and_reads_back(to: str):
    data = compose(message_key="bk_5-confirmed", to=to, subject="Booked", text="Hi\n")

    assert data.isascii()
    assert b"<jose@example.org>" in data  # the address itself stays outside the encoded word
    mailbox = parsed(data)["To"].addresses
    assert len(mailbox) == 1
    assert (mailbox[0].display_name, mailbox[0].addr_spec) == ("José Ñúñez", "jose@example.org")


def test_an_ascii_name_with_specials_is_quoted():
    data = compose(
        message_key="bk_6-confirmed", to=formataddr(("Smith, John", "js@example.org")), subject="s", text="t"
    )

    (mailbox,) = parsed(data)["To"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == ("Smith, John", "js@example.org")


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("guest@example.org", "Booked\r\nBcc: victim@example.org"),
        ("guest@example.org", "Booked\nBcc: victim@example.org"),
        ("guest@example.org", "Booked\rBcc: victim@example.org"),
        ("guest@example.org\r\nBcc: victim@example.org", "Booked"),
        ("guest@example.org\nBcc: victim@example.org", "Booked"),
        ("Eve\n <guest@example.org>", "Booked"),
        (formataddr(("Évé\nBcc: victim@example.org", "guest@example.org")), "Booked"),  # in RFC 2047
        ("guest@example.org", "Booked\u2028Bcc: victim@example.org"),
    ],
)
def test_a_line_break_in_to_or_subject_is_refused(to: str, subject: str):
    with pytest.raises(ValueError):
        compose(message_key="bk_7-confirmed", to=to, subject=subject, text="Hi\n")


@pytest.mark.parametrize("to", ["", "not an address", "a@example.org, b@example.org", "josé@exämple.org", "@x"])
def test_to_must_be_exactly_one_ascii_mailbox(to: str):
    with pytest.raises(ValueError):
        parse_recipient(to)
    with pytest.raises(ValueError):
        compose(message_key="bk_8-confirmed", to=to, subject="s", text="t")


@pytest.mark.parametrize("key", ["", "../etc/passwd", "bk 1", "bk_1>\r\nBcc: x@example.org"])
def test_a_message_key_is_checked_before_it_becomes_the_message_id(key: str):
    with pytest.raises(ValueError):
        compose(message_key=key, to="guest@example.org", subject="s", text="t")
