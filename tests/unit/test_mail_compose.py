"""The bytes of an e-mail, as any mail reader parses them back."""

from __future__ import annotations

import email
from email import policy

from bookline.adapters.mail import FROM_ADDRESS, compose


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
