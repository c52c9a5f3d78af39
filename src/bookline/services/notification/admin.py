"""notification-service's admin reads (``/admin``, token-protected, for ``bookline audit`` and the
notification reconciler): the sent-notification log, the e-mails on disk, and the card and data scans
of its database and of the queue it consumes (not of the e-mails: they are addressed to the guest)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from bookline.adapters.db import Database
from bookline.adapters.queue import queue_from
from bookline.config import Settings
from bookline.services.common.admin import (
    DEFAULT_PAGE_ROWS,
    After,
    Limit,
    ScanBody,
    Since,
    admin_router,
    cursor_values,
    encode_cursor,
    keyset_page,
    mount_admin,
)
from bookline.services.common.data_scan import AnyScan, DataScan, row_key, scan_tables
from bookline.services.notification.tables import metadata, sent_notifications

_sent = sent_notifications.c
KINDS = ("confirmed", "cancelled")


def _view(row: Any) -> dict[str, Any]:
    return {
        "booking_id": row.booking_id,
        "kind": row.kind,
        "message_id": row.message_id,
        "reservation_id": row.reservation_id,
        "sent_at": row.sent_at,
    }


def mail_on_disk(mail_dir: Path) -> list[dict[str, Any]]:
    """The e-mails the guests got: one ``<booking_id>-<kind>.eml`` file per booking and kind (the
    mailer replaces the same file when a notification is sent again), in name order."""
    try:
        names = sorted(e.name for e in os.scandir(mail_dir) if e.is_file() and e.name.endswith(".eml"))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        booking_id, _, kind = name[: -len(".eml")].rpartition("-")
        if booking_id and kind in KINDS:
            found.append({"booking_id": booking_id, "kind": kind, "file": name})
    return found


def scan_queue(path: Path, scan: AnyScan, since: float | None = None) -> None:
    """The queue's messages (the booking events on their way to the guest), read-only; with ``since``,
    only those published at or after it (a message is written once, when it is published)."""
    if not path.exists():
        return
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    where, args = (" WHERE published_at >= ?", [since]) if since is not None else ("", [])
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        for seq, message_id, topic, body, headers in conn.execute(
            f"SELECT seq, message_id, topic, body, headers FROM messages{where} ORDER BY seq", args
        ):
            scan.row(
                "queue.messages",
                row_key([seq]),
                (("message_id", message_id), ("topic", topic), ("body", body), ("headers", headers)),
            )
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
    finally:
        conn.close()


async def scan_the_queue(settings: Settings, scan: AnyScan, since: float | None) -> None:
    """The queue's messages, examined like rows: the SQLite file, or the JetStream stream read through
    a consumer of the scan's own (the consumer groups' positions are left alone)."""
    if not settings.queue_url:
        await asyncio.to_thread(scan_queue, settings.queue_path, scan, since)
        return
    queue = queue_from(settings)
    try:
        async for message in queue.stored_messages(since):  # type: ignore[attr-defined]
            scan.row(
                "queue.messages",
                row_key([message.seq]),
                (
                    ("message_id", message.message_id),
                    ("topic", message.topic),
                    ("body", message.body),
                    ("headers", json.dumps(message.headers, separators=(",", ":"))),
                ),
            )
    finally:
        await queue.close()


def add_admin_routes(app: FastAPI, settings: Settings, db: Database) -> None:
    router = admin_router(settings)

    @router.get("/notifications")
    async def list_notifications(
        since: Since = None, after: After = None, limit: Limit = DEFAULT_PAGE_ROWS
    ) -> dict[str, Any]:
        """Every notification sent at or after ``since``: one row per (booking, kind)."""
        query = select(sent_notifications)
        if since is not None:
            query = query.where(_sent.sent_at >= since)
        async with db.read() as conn:
            page = await keyset_page(conn, query, [_sent.booking_id, _sent.kind], after=after, limit=limit)
        return {"notifications": [_view(r) for r in page.rows], "next": page.next}

    @router.get("/mail")
    async def list_mail(after: After = None, limit: Limit = DEFAULT_PAGE_ROWS) -> dict[str, Any]:
        """The ``.eml`` files under DATA_DIR/mail, as (booking_id, kind): what the guests received."""
        found = await asyncio.to_thread(mail_on_disk, settings.mail_dir)
        if after is not None:
            (last,) = cursor_values(after, 1)
            found = [m for m in found if m["file"] > str(last)]
        page = found[:limit]
        more = len(found) > limit
        return {"mail": page, "next": encode_cursor([page[-1]["file"]]) if more else None}

    @router.get("/card-scan")
    async def card_scan(since: Since = None) -> dict[str, Any]:
        """Where notification-service's database, or the queue it consumes, holds something that is a
        card number (never the value); with ``since``, only the rows written and the messages published
        at or after it."""
        scan = await scan_tables(db, metadata.sorted_tables, since=since)
        await scan_the_queue(settings, scan, since)
        return scan.body()

    @router.post("/data-scan")
    async def data_scan(body: ScanBody) -> dict[str, Any]:
        """Where notification-service's database, or the queue it consumes, holds a card number, an
        e-mail address, a phone number or one of the given guests' names (never the value); with
        ``since``, only the rows written and the messages published at or after it. The e-mails on
        disk are the guest's own and are not scanned."""
        scan = await scan_tables(db, metadata.sorted_tables, DataScan(names=body.names), since=body.since)
        await scan_the_queue(settings, scan, body.since)
        return scan.body()

    mount_admin(app, router)
