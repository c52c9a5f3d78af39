"""Reading a running Bookline for the audit: every service's admin endpoints (and the telemetry
store's), page by page, into a :class:`~bookline.audit.snapshot.Snapshot`.

The services are read one after another, committed facts first and derived ones after (bookings,
then what the other services did about them), so what a later read adds can only be more complete.
A service that cannot be read stops the audit with :class:`ServiceUnreadable`; the telemetry store
is optional (telemetry may go elsewhere), so not reaching it only makes the trace check skip.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx

from bookline.audit.checks import SPAN_NAMES
from bookline.audit.snapshot import (
    AuthorizationRecord,
    BookingRecord,
    CardHit,
    ClaimRecord,
    ConfirmationRecord,
    HoldRecord,
    MailRecord,
    NotificationRecord,
    Snapshot,
    SpanRecord,
)
from bookline.config import SERVICES, TELEMETRY_STORE, Settings

# a card scan reads a whole database: give it time
READ_TIMEOUT_S = 120.0
# reservation ids per look-up of bookings created before --since
_LOOKUP_BATCH = 200


class ServiceUnreadable(Exception):
    """A service whose state the audit needs could not be read; the message says which and why."""

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        self.reason = reason
        super().__init__(f"{service}: {reason}")


class StoreUnreachable(Exception):
    """The telemetry store does not answer (it is optional)."""


class AdminReader:
    """GETs of one Bookline's admin endpoints with the admin token."""

    def __init__(self, settings: Settings, token: str, http: httpx.Client) -> None:
        self.settings = settings
        self.http = http
        self._headers = {"Authorization": f"Bearer {token}"}

    def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        url = self.settings.url_of(service) + path
        try:
            response = self.http.get(url, params=params, headers=self._headers)
        except httpx.ConnectError:
            if service == TELEMETRY_STORE.name:
                raise StoreUnreachable(
                    f"the telemetry store does not answer at {self.settings.url_of(service)}"
                ) from None
            raise ServiceUnreadable(service, f"does not answer at {self.settings.url_of(service)}") from None
        except httpx.TimeoutException:
            raise ServiceUnreadable(service, f"did not answer GET {path} in time") from None
        except httpx.HTTPError as exc:
            raise ServiceUnreadable(service, f"GET {path} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise ServiceUnreadable(service, _refusal(response, path))
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ServiceUnreadable(service, f"GET {path} answered something that is not a JSON object")
        return body

    def pages(self, service: str, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict]:
        """Every item of a paged list endpoint (``{key: [...], "next": cursor}``)."""
        params = dict(params or {})
        while True:
            body = self.get(service, path, params)
            items = body.get(key)
            if not isinstance(items, list):
                raise ServiceUnreadable(service, f"GET {path} answered without a list of {key}")
            yield from items
            if not body.get("next"):
                return
            params["after"] = body["next"]


def _refusal(response: httpx.Response, path: str) -> str:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if response.status_code == 401:
        return (
            "refused the admin token (admin_unauthorized): give the audit the token `bookline up` gave the "
            "services (BOOKLINE_ADMIN_TOKEN, or --data-dir of that run for its admin.token)"
        )
    if response.status_code == 403:
        return "has no admin token configured (admin_disabled): start it with BOOKLINE_ADMIN_TOKEN set"
    if response.status_code == 404 and code in (None, "not_found"):
        return f"has no GET {path} (is it an older Bookline?)"
    return f"answered {response.status_code} ({code or 'no error code'}) to GET {path}"


def _since(since: float | None) -> dict[str, Any]:
    return {"since": since} if since is not None else {}


def _date(text: str) -> date:
    return date.fromisoformat(text)


def read_bookings(reader: AdminReader, since: float | None) -> list[BookingRecord]:
    return [_booking(b) for b in reader.pages("booking-service", "/admin/bookings", "bookings", _since(since))]


def _booking(b: dict[str, Any]) -> BookingRecord:
    return BookingRecord(
        booking_id=b["booking_id"],
        reservation_id=b["reservation_id"],
        status=b["status"],
        created_at=float(b["created_at"]),
        updated_at=float(b["updated_at"]),
        outcome=b.get("outcome"),
        failure_code=b.get("failure_code"),
        room_id=b.get("room_id"),
        check_in=date.fromisoformat(b["check_in"]) if b.get("check_in") else None,
        check_out=date.fromisoformat(b["check_out"]) if b.get("check_out") else None,
        total_minor=b.get("total_minor"),
        currency=b.get("currency"),
        payment_transaction_id=b.get("payment_transaction_id"),
        trace_id=b.get("trace_id"),
        steps=dict(b.get("steps") or {}),
        steps_updated_at={k: float(v) for k, v in (b.get("steps_updated_at") or {}).items()},
    )


def read_outside_window(reader: AdminReader, reservations: list[str]) -> set[str]:
    """Which of these reservations belong to bookings (created before ``--since``)."""
    found: set[str] = set()
    for i in range(0, len(reservations), _LOOKUP_BATCH):
        batch = reservations[i : i + _LOOKUP_BATCH]
        for b in reader.pages("booking-service", "/admin/bookings", "bookings", {"reservation_id": batch}):
            found.add(b["reservation_id"])
    return found


def read_availability(reader: AdminReader, since: float | None) -> tuple[list[ClaimRecord], list[HoldRecord]]:
    # claims before holds: a hold that changes in between then looks newer than its claims, never older
    claims = [
        ClaimRecord(c["room_id"], _date(c["night"]), c["reservation_id"], c["kind"], c.get("expires_at"))
        for c in reader.pages("availability-service", "/admin/claims", "claims", _since(since))
    ]
    holds = [
        HoldRecord(
            reservation_id=h["reservation_id"],
            room_id=h["room_id"],
            check_in=_date(h["check_in"]),
            check_out=_date(h["check_out"]),
            status=h["status"],
            expires_at=float(h["expires_at"]),
            created_at=float(h["created_at"]),
            updated_at=float(h["updated_at"]),
        )
        for h in reader.pages("availability-service", "/admin/holds", "holds", _since(since))
    ]
    return claims, holds


def read_confirmations(reader: AdminReader, since: float | None) -> list[ConfirmationRecord]:
    return [
        ConfirmationRecord(
            reservation_id=c["reservation_id"],
            booking_id=c["booking_id"],
            status=c["status"],
            room_id=c["room_id"],
            check_in=_date(c["check_in"]),
            check_out=_date(c["check_out"]),
            confirmation_code=c.get("confirmation_code", ""),
            created_at=float(c.get("created_at", 0.0)),
        )
        for c in reader.pages("confirmation-service", "/admin/bookings", "bookings", _since(since))
    ]


def read_authorizations(reader: AdminReader, since: float | None) -> list[AuthorizationRecord]:
    return [
        AuthorizationRecord(
            auth_id=a["auth_id"],
            reservation_id=a["reservation_id"],
            status=a["status"],
            amount_minor=int(a["amount_minor"]),
            captured_minor=int(a["captured_minor"]),
            refunded_minor=int(a["refunded_minor"]),
            currency=a.get("currency", ""),
            created_at=float(a.get("created_at", 0.0)),
            updated_at=float(a.get("updated_at", 0.0)),
        )
        for a in reader.pages("payment-gateway", "/admin/authorizations", "authorizations", _since(since))
    ]


def read_notifications(reader: AdminReader, since: float | None) -> tuple[list[NotificationRecord], list[MailRecord]]:
    service = "notification-service"
    sent = [
        NotificationRecord(n["booking_id"], n["kind"], n.get("message_id", ""), float(n.get("sent_at", 0.0)))
        for n in reader.pages(service, "/admin/notifications", "notifications", _since(since))
    ]
    mail = [MailRecord(m["booking_id"], m["kind"]) for m in reader.pages(service, "/admin/mail", "mail")]
    return sent, mail


def read_card_scans(reader: AdminReader, snapshot: Snapshot) -> None:
    for spec in SERVICES:
        body = reader.get(spec.name, "/admin/card-scan", _since(snapshot.since))
        snapshot.card_scanned.append(spec.name)
        snapshot.card_hits.extend(_hits(spec.name, body))


def _hits(service: str, body: dict[str, Any]) -> list[CardHit]:
    return [CardHit(service, h["table"], h["column"], h["row_key"]) for h in body.get("hits", [])]


def read_telemetry(reader: AdminReader, settings: Settings, snapshot: Snapshot) -> None:
    """The compensation spans and the card scan of the local telemetry store, when there is one."""
    store = TELEMETRY_STORE.name
    why_not = None
    if settings.telemetry_disabled:
        why_not = "telemetry is off (OTEL_SDK_DISABLED=true)"
    elif settings.exports_otlp:
        endpoint = settings.otel.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or settings.otel.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        why_not = f"traces go to {endpoint}, not to the local telemetry store the audit reads"
    if why_not is None:
        try:
            params = {"name": list(SPAN_NAMES), **_since(snapshot.since)}
            first = reader.get(store, "/admin/horizon")
            spans = list(reader.pages(store, "/admin/spans", "spans", params))
            scan = reader.get(store, "/admin/card-scan", _since(snapshot.since))
        except StoreUnreachable as exc:
            why_not = str(exc)
        else:
            snapshot.oldest_span_unix_nano = first.get("oldest_start_unix_nano")
            snapshot.spans = [
                SpanRecord(s["trace_id"], s["name"], (s.get("attributes") or {}).get("booking.reservation_id"),
                           s.get("status", "UNSET"))
                for s in spans
            ]  # fmt: skip
            snapshot.card_scanned.append(store)
            snapshot.card_hits.extend(_hits(store, scan))
            return
    snapshot.spans_unavailable = why_not
    snapshot.card_scan_skipped[store] = why_not


def collect(
    settings: Settings, token: str, *, since: float | None = None, http: httpx.Client | None = None
) -> Snapshot:
    """Read every service of the Bookline that ``settings`` point at; raises :class:`ServiceUnreadable`."""
    own = http is None
    http = http or httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=5.0), trust_env=False)
    try:
        reader = AdminReader(settings, token, http)
        snapshot = Snapshot(taken_at=time.time(), since=since)
        snapshot.bookings = read_bookings(reader, since)
        snapshot.confirmations = read_confirmations(reader, since)
        snapshot.claims, snapshot.holds = read_availability(reader, since)
        snapshot.authorizations = read_authorizations(reader, since)
        snapshot.notifications, snapshot.mail = read_notifications(reader, since)
        if since is not None:
            known = {b.reservation_id for b in snapshot.bookings}
            strangers = sorted({a.reservation_id for a in snapshot.authorizations} - known)
            snapshot.reservations_outside_window = read_outside_window(reader, strangers) if strangers else set()
        read_card_scans(reader, snapshot)
        read_telemetry(reader, settings, snapshot)
        return snapshot
    finally:
        if own:
            http.close()
