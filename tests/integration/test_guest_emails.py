"""The guest's e-mails through the real services, delivered over SMTP to a server the test runs
(aiosmtpd on loopback): the confirmation and the cancellation parse, go to the guest, and hold
everything a guest needs (property name and address, room name and type, each night with its price,
taxes, total, the terms and their deadline in the property's time zone, the code; the refund and
the penalty of a late cancellation), in a text and an HTML part, the HTML escaping a hostile name."""

from __future__ import annotations

import email
import email.policy
import socket
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiosmtpd.controller import Controller

from bookline.domain.money import Money
from bookline.services.notification.templates import format_date, format_money
from conftest import start_stack
from support.booking import Client, as_service

GUEST = {"name": "<script>alert(1)</script> Lopez", "email": "ana.lopez@example.com"}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"

    def wait_for(self, subject_part: str, timeout: float = 15.0) -> tuple[list[str], Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for recipients, message in self.messages:
                if subject_part in message["Subject"]:
                    return recipients, message
            time.sleep(0.05)
        raise AssertionError(f"no e-mail whose subject holds {subject_part!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def inbox() -> Any:
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, inbox):
    _box, port = inbox
    s = start_stack(tmp_path_factory.mktemp("mail"), smtp_url=f"smtp://127.0.0.1:{port}")
    yield s
    s.stop()


def parts(message: Any) -> tuple[str, str]:
    return message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content()


def test_the_confirmation_and_a_late_cancellation_reach_the_guest_with_all_they_need(stack, client: Client, inbox):
    box, _port = inbox
    today = datetime.now(UTC).date()
    booked = client.book(client.body(property_id="prop-00003", stay=(today, today + timedelta(days=2)), guest=GUEST))
    assert booked.status_code == 201, booked.text
    created = booked.json()
    code, currency = created["confirmation_code"], created["currency"]
    place = httpx.get(f"{client.booking_url}/properties/prop-00003").json()
    room = next(r for r in place["rooms"] if r["room_id"] == created["room_id"])
    booking = client.get(f"/bookings/{created['booking_id']}").json()
    terms = created["cancellation"]

    recipients, confirmed = box.wait_for(f"{code} is confirmed")
    assert recipients == [GUEST["email"]]
    assert confirmed["To"].addresses[0].addr_spec == GUEST["email"]
    assert confirmed.get_content_type() == "multipart/alternative"
    text, html = parts(confirmed)
    deadline = datetime.fromisoformat(terms["free_cancellation_until"]).astimezone(ZoneInfo(place["time_zone"]))
    expected = [code, place["name"], place["address"], room["name"], room["room_type"],
                format_money(Money(created["total_minor"], currency)), f"{deadline:%H:%M}", place["time_zone"],
                format_money(Money(terms["penalty_minor"], currency))]  # fmt: skip
    # the quote the booking was charged, as pricing-engine keeps it: every night and its price, the taxes
    quote = httpx.get(f"{stack.url('pricing-engine')}/quotes/{created['quote_id']}",
                      headers=as_service(stack.key_dir, "booking-service", "pricing-engine")).json()  # fmt: skip
    assert len(quote["nights"]) == 2
    for night in quote["nights"]:
        expected += [
            format_date(date.fromisoformat(night["night"])),
            format_money(Money(night["amount_minor"], currency)),
        ]
    expected.append(format_money(Money(quote["taxes_minor"], currency)))
    for item in expected:
        assert item in text, item
        assert item.replace("&", "&amp;") in html, item
    assert GUEST["name"] in text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; Lopez" in html
    assert booking["guest"]["name"] == GUEST["name"]

    cancelled = client.cancel(created["booking_id"])
    assert cancelled.status_code == 200, cancelled.text
    refund, penalty = cancelled.json()["refund_minor"], cancelled.json()["cancellation_penalty_minor"]
    assert penalty == terms["penalty_minor"] > 0
    _recipients, cancellation = box.wait_for(f"{code} is cancelled")
    text, html = parts(cancellation)
    for amount in (refund, penalty):
        assert format_money(Money(amount, currency)) in text and format_money(Money(amount, currency)) in html
