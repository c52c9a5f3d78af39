"""The guest e-mails as a mail reader shows them: rendered, composed, then parsed back."""

from __future__ import annotations

import dataclasses
import email
import re
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from email.utils import formataddr
from html.parser import HTMLParser

import pytest

from bookline.adapters.mail import compose
from bookline.domain.money import Money
from bookline.domain.terms import CancellationTerms
from bookline.services.notification.templates import (
    BookingMail,
    NightLine,
    NotificationKind,
    RenderedMail,
    format_money,
    render,
)

GUEST_EMAIL = "guest-u_1@guests.bookline.example"


def lisbon_mail(**changes: object) -> BookingMail:
    """Three summer nights in Lisbon (UTC+1 then), the Saturday dearer, 10 % taxes."""
    mail = BookingMail(
        booking_id="bk_01J0000000000000000000000",
        confirmation_code="BK7Q2XZ",
        guest_name="Maria Silva",
        guest_email=GUEST_EMAIL,
        property_name="Casa Augusta",
        property_address="Rua Augusta 12, 1100-053 Lisbon, Portugal",
        room_name="Double 003",
        room_type="double",
        check_in=date(2025, 7, 11),
        check_out=date(2025, 7, 14),
        nights=[
            NightLine(date(2025, 7, 11), Money(12000, "EUR")),
            NightLine(date(2025, 7, 12), Money(15550, "EUR")),  # Saturday
            NightLine(date(2025, 7, 13), Money(12000, "EUR")),
        ],
        taxes=Money(3955, "EUR"),
        total=Money(43505, "EUR"),
        terms=CancellationTerms(
            free_cancellation_hours=48,
            free_until=datetime(2025, 7, 9, 14, 0, tzinfo=UTC),  # 15:00 in Lisbon (WEST)
            penalty=Money(13200, "EUR"),
            time_zone="Europe/Lisbon",
        ),
    )
    return dataclasses.replace(mail, **changes)  # type: ignore[arg-type]


def tokyo_mail(**changes: object) -> BookingMail:
    """Two nights in Tokyo priced in yen (no minor unit); the deadline is on another day in UTC."""
    mail = BookingMail(
        booking_id="bk_01J0000000000000000000001",
        confirmation_code="TK3M9QA",
        guest_name="Sato Hanako",
        guest_email="guest-u_2@guests.bookline.example",
        property_name="Hotel Sakura",
        property_address="1-2-3 Asakusa, Taito-ku, Tokyo 111-0032, Japan",
        room_name="Twin 101",
        room_type="twin",
        check_in=date(2025, 4, 10),
        check_out=date(2025, 4, 12),
        nights=[
            NightLine(date(2025, 4, 10), Money(18000, "JPY")),
            NightLine(date(2025, 4, 11), Money(21500, "JPY")),
        ],
        taxes=Money(3950, "JPY"),
        total=Money(43450, "JPY"),
        terms=CancellationTerms(
            free_cancellation_hours=24,
            free_until=datetime(2025, 4, 8, 20, 30, tzinfo=UTC),  # Wed 9 Apr 05:30 in Tokyo
            penalty=Money(19800, "JPY"),
            time_zone="Asia/Tokyo",
        ),
    )
    return dataclasses.replace(mail, **changes)  # type: ignore[arg-type]


def delivered(mail: BookingMail, kind: NotificationKind) -> tuple[RenderedMail, EmailMessage]:
    rendered = render(mail, kind)
    data = compose(
        message_key=f"{mail.booking_id}-{kind}",
        to=formataddr((mail.guest_name, mail.guest_email)),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )
    assert data.isascii()
    return rendered, email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


class _Page(HTMLParser):
    """What a browser shows of an HTML part (character references resolved), and its tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def shown(html: str) -> tuple[str, list[str]]:
    page = _Page()
    page.feed(html)
    page.close()
    return " ".join(" ".join(page.chunks).split()), page.tags


def parts(message: EmailMessage) -> tuple[str, str]:
    """(text part, HTML part as a browser shows it) of a multipart/alternative e-mail."""
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return text, html


def assert_says(body: str, items: list[str]) -> None:
    flat = " ".join(body.split())  # line breaks and alignment are layout, not content
    missing = [item for item in items if item not in flat]
    assert not missing, f"missing {missing} in:\n{body}"


def test_the_confirmation_email_says_everything_in_both_parts():
    rendered, message = delivered(lisbon_mail(), NotificationKind.CONFIRMED)

    assert message["Subject"] == "Your booking BK7Q2XZ is confirmed"
    assert message["To"].addresses[0].addr_spec == GUEST_EMAIL
    assert message["To"].addresses[0].display_name == "Maria Silva"
    expected = [
        "Hello Maria Silva",
        "Casa Augusta",
        "Rua Augusta 12, 1100-053 Lisbon, Portugal",
        "Double 003 (double)",
        "Check-in",
        "Fri 11 Jul 2025",
        "Check-out",
        "Mon 14 Jul 2025",
        "3 nights",
        "Taxes",
        "39.55 EUR",
        "Total",
        "435.05 EUR",
        "Free cancellation until Wed 9 Jul 2025, 15:00 (Europe/Lisbon); after that, 132.00 EUR is charged.",
        "BK7Q2XZ",
    ]
    text, html = parts(message)
    page, _ = shown(html)
    for body in (text, page):
        assert_says(body, expected)
        assert "Refund" not in body and "Penalty" not in body
    assert (text, html) == (rendered.text, rendered.html)


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_each_night_is_listed_with_its_own_price(kind: NotificationKind):
    _, message = delivered(lisbon_mail(), kind)
    text, html = parts(message)
    nights = [("Fri 11 Jul 2025", "120.00 EUR"), ("Sat 12 Jul 2025", "155.50 EUR"), ("Sun 13 Jul 2025", "120.00 EUR")]

    lines = text.splitlines()
    for night, price in nights:  # on one line of the text part, the date then its price
        assert any(night in line and line.rstrip().endswith(price) for line in lines), (night, price)
    page, _ = shown(html)
    assert_says(page, [f"{night} {price}" for night, price in nights])


def test_the_cancellation_email_adds_the_refund_and_the_penalty():
    mail = lisbon_mail(refund=Money(30305, "EUR"), penalty=Money(13200, "EUR"))
    _, message = delivered(mail, NotificationKind.CANCELLED)

    assert message["Subject"] == "Your booking BK7Q2XZ is cancelled"
    text, html = parts(message)
    page, _ = shown(html)
    for body in (text, page):
        assert_says(
            body,
            [
                "Hello Maria Silva",
                "cancelled",
                "Refund",
                "303.05 EUR",
                "Penalty",
                "132.00 EUR",
                "Casa Augusta",
                "Rua Augusta 12, 1100-053 Lisbon, Portugal",
                "Double 003 (double)",
                "Fri 11 Jul 2025",
                "Mon 14 Jul 2025",
                "3 nights",
                "39.55 EUR",
                "435.05 EUR",
                "Free cancellation until Wed 9 Jul 2025, 15:00 (Europe/Lisbon)",
                "BK7Q2XZ",
            ],
        )


def test_a_free_cancellation_says_no_penalty():
    mail = lisbon_mail(refund=Money(43505, "EUR"), penalty=Money(0, "EUR"))
    _, message = delivered(mail, NotificationKind.CANCELLED)

    text, html = parts(message)
    for body in (text, shown(html)[0]):
        assert_says(body, ["435.05 EUR", "no penalty"])
        assert not re.search(r"(?<![\d,.])0\.00 EUR", body)  # no zero amount shown as a penalty


def test_terms_without_a_penalty_are_free_until_check_in():
    terms = dataclasses.replace(lisbon_mail().terms, penalty=Money(0, "EUR"))
    _, message = delivered(lisbon_mail(terms=terms), NotificationKind.CONFIRMED)

    text, html = parts(message)
    for body in (text, shown(html)[0]):
        assert_says(body, ["Cancellation is free until check-in."])
        assert "is charged" not in body


def test_a_yen_stay_shows_whole_yen_and_the_deadline_in_tokyo_time():
    _, message = delivered(tokyo_mail(), NotificationKind.CONFIRMED)

    text, html = parts(message)
    for body in (text, shown(html)[0]):
        assert_says(
            body,
            [
                "Hello Sato Hanako",
                "Hotel Sakura",
                "1-2-3 Asakusa, Taito-ku, Tokyo 111-0032, Japan",
                "Twin 101 (twin)",
                "Thu 10 Apr 2025 18,000 JPY",
                "Fri 11 Apr 2025 21,500 JPY",
                "2 nights",
                "3,950 JPY",
                "43,450 JPY",
                "Free cancellation until Wed 9 Apr 2025, 05:30 (Asia/Tokyo); after that, 19,800 JPY is charged.",
                "TK3M9QA",
            ],
        )
        assert ".00 JPY" not in body


def test_one_night_is_singular():
    mail = lisbon_mail(check_out=date(2025, 7, 12), nights=lisbon_mail().nights[:1])
    text, html = parts(delivered(mail, NotificationKind.CONFIRMED)[1])

    assert "(1 night)" in text and "(1 night)" in shown(html)[0]


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_markup_in_a_value_is_escaped_in_html_and_left_alone_in_text(kind: NotificationKind):
    name = "<script>alert(1)</script>"
    mail = lisbon_mail(
        guest_name=name,
        property_name='Casa "Augusta" & <b>Filhos</b>',
        room_name="<img src=x onerror=alert(2)>",
        refund=Money(30305, "EUR"),
        penalty=Money(13200, "EUR"),
    )
    rendered, message = delivered(mail, kind)
    text, html = parts(message)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "<img" not in html and "<b>Filhos" not in html
    assert "&amp; &lt;b&gt;Filhos&lt;/b&gt;" in html
    page, tags = shown(html)
    assert not {"script", "img", "b"} & set(tags)  # nothing a value holds became an element
    assert_says(page, [f"Hello {name}", 'Casa "Augusta" & <b>Filhos</b>', "<img src=x onerror=alert(2)>"])
    # the text part is not HTML: the same values, verbatim
    assert f"Hello {name}," in text
    assert 'Casa "Augusta" & <b>Filhos</b>' in text
    assert "&lt;" not in text and "&amp;" not in text
    assert message["To"].addresses[0].display_name == name
    assert message["To"].addresses[0].addr_spec == GUEST_EMAIL
    assert rendered.text == text


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_a_non_ascii_guest_name_round_trips_in_the_to_header_and_both_parts(kind: NotificationKind):
    name = "José Ñúñez"
    _, message = delivered(lisbon_mail(guest_name=name, refund=Money(30305, "EUR"), penalty=Money(13200, "EUR")), kind)

    (mailbox,) = message["To"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == (name, GUEST_EMAIL)
    text, html = parts(message)
    assert f"Hello {name}," in text
    assert f"Hello {name}," in shown(html)[0]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())


def test_format_money_is_unchanged():
    assert format_money(Money(123450, "EUR")) == "1,234.50 EUR"
    assert format_money(Money(5, "USD")) == "0.05 USD"
    assert format_money(Money(45000, "JPY")) == "45,000 JPY"
    assert format_money(Money(-1999, "EUR")) == "-19.99 EUR"
