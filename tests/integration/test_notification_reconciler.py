"""The notification reconciler through the real services: a booking event lost on its way to
notification-service is written again, and the guest still gets exactly one e-mail."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from conftest import start_stack
from support.booking import Client
from support.spans import one
from support.up import wait_for

TOKEN = "reconciler-test-admin-token"


@pytest.fixture()
def stack(tmp_path):
    s = start_stack(tmp_path, admin_token=TOKEN, reconcile_interval_s=0.3, reconcile_settle_after_s=1.5)
    yield s
    s.stop()


def published_event(data_dir, reservation_id: str) -> str | None:
    with sqlite3.connect(data_dir / "confirmation.db") as conn:
        row = conn.execute(
            "SELECT event_id FROM outbox WHERE published_at IS NOT NULL AND payload LIKE ?",
            (f'%"{reservation_id}"%',),
        ).fetchone()
    return row[0] if row else None


def delivery_check(data_dir, event_id: str) -> str | None:
    with sqlite3.connect(data_dir / "confirmation.db") as conn:
        row = conn.execute("SELECT status FROM delivery_checks WHERE event_id = ?", (event_id,)).fetchone()
    return row[0] if row else None


def test_a_lost_booking_event_is_sent_again_and_the_guest_gets_one_email(stack):
    data_dir = stack.settings.data_dir
    client = Client.for_stack(stack)
    stack.stop_service("notification-service")
    created = client.book(client.body()).json()
    booking_id, reservation_id = created["booking_id"], created["reservation_id"]

    # the relay published the event; the queue then loses it, as a broker restored from an old
    # backup would: notification-service never sees it
    event_id = wait_for(lambda: published_event(data_dir, reservation_id))
    with sqlite3.connect(data_dir / "queue.db") as conn:
        assert conn.execute("DELETE FROM messages WHERE message_id = ?", (event_id,)).rowcount == 1
    stack.restart_service("notification-service")

    mail = data_dir / "mail" / f"{booking_id}-confirmed.eml"
    wait_for(mail.exists)
    assert delivery_check(data_dir, event_id) == "resent"
    assert len(list((data_dir / "mail").glob(f"{booking_id}-*.eml"))) == 1

    resend = one(
        wait_for(lambda: [s for s in stack.spans() if s.name == "confirmation.resend_notification"]),
        "confirmation.resend_notification",
    )
    assert resend.attributes["booking.id"] == booking_id
    assert resend.attributes["notification.kind"] == "confirmed"
    assert resend.attributes["messaging.message.id"] != event_id
    # linked to the booking's trace; the new delivery continues the resend's own trace
    assert format(resend.links[0].context.trace_id, "032x") == created["trace_id"]
    resend_trace = format(resend.context.trace_id, "032x")
    wait_for(lambda: [s for s in stack.spans(resend_trace) if s.name == "notification.send_email"])

    # the resent event is checked in turn, and found delivered
    wait_for(lambda: delivery_check(data_dir, resend.attributes["messaging.message.id"]) == "delivered")


def test_delivered_events_are_marked_delivered_without_a_trace(stack):
    data_dir = stack.settings.data_dir
    client = Client.for_stack(stack)
    created = client.book(client.body()).json()
    event_id = wait_for(lambda: published_event(data_dir, created["reservation_id"]))
    wait_for(lambda: delivery_check(data_dir, event_id) == "delivered")
    assert not [s for s in stack.spans() if s.name == "confirmation.resend_notification"]
    admin = httpx.get(f"{stack.url('notification-service')}/admin/notifications", params={"since": 0})
    assert admin.status_code == 401, "the admin API answered without its token"
