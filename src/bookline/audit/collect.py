"""Reading a running Bookline for the audit: every service's admin endpoints (and the telemetry
store's), page by page, into a :class:`~bookline.audit.snapshot.Snapshot`.

The services are read one after another, committed facts first and derived ones after (bookings,
then what the other services did about them), so what a later read adds can only be more complete.
A service that cannot be read stops the audit with :class:`ServiceUnreadable`; the telemetry store
is optional (telemetry may go elsewhere), so not reaching it only makes the trace check skip.

The data scans look for the guests' names booking-service keeps (``GET /admin/guest-names``): the
names are held in memory for the scans and sent only in their request bodies, never kept in the
snapshot, written or logged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
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
    DataHit,
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
# what one data scan request may carry (POST /admin/data-scan): at most this many names, of at most
# this many characters, in a body under the services' body limit (BOOKLINE_MAX_BODY_BYTES) less this
MAX_SCAN_NAMES = 10_000
MAX_SCAN_NAME_CHARS = 200
_BODY_MARGIN = 1024
MIN_NAME_CHARS = 3


class ServiceUnreadable(Exception):
    """A service whose state the audit needs could not be read; the message says which and why."""

    def __init__(self, service: str, reason: str) -> None:
        self.service = service
        self.reason = reason
        super().__init__(f"{service}: {reason}")


class StoreUnreachable(Exception):
    """The telemetry store does not answer (it is optional)."""


class AdminReader:
    """GETs (and the POSTs of the data scans) of one Bookline's admin endpoints with the admin token."""

    def __init__(self, settings: Settings, token: str, http: httpx.Client) -> None:
        self.settings = settings
        self.http = http
        self._headers = {"Authorization": f"Bearer {token}"}

    def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        body = self._call("GET", service, path, params=params)
        assert body is not None
        return body

    def get_if_served(self, service: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """``get``, or None when the service answers 404 (it has no such endpoint)."""
        return self._call("GET", service, path, params=params, missing_ok=True)

    def post(self, service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A POST of ``body`` as JSON; whatever the answer, no error names what the body held."""
        answer = self._call("POST", service, path, body=body)
        assert answer is not None
        return answer

    def _call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        url = self.settings.url_of(service) + path
        try:
            response = self.http.request(method, url, params=params, json=body, headers=self._headers)
        except httpx.ConnectError:
            if service == TELEMETRY_STORE.name:
                raise StoreUnreachable(
                    f"the telemetry store does not answer at {self.settings.url_of(service)}"
                ) from None
            raise ServiceUnreadable(service, f"does not answer at {self.settings.url_of(service)}") from None
        except httpx.TimeoutException:
            raise ServiceUnreadable(service, f"did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise ServiceUnreadable(service, f"{method} {path} failed: {type(exc).__name__}") from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code != 200:
            raise ServiceUnreadable(service, _refusal(response, path, method))
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ServiceUnreadable(service, f"{method} {path} answered something that is not a JSON object")
        return answer

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


def _refusal(response: httpx.Response, path: str, method: str = "GET") -> str:
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
        return f"has no {method} {path} (is it an older Bookline?)"
    return f"answered {response.status_code} ({code or 'no error code'}) to {method} {path}"


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
        cancellation_penalty_minor=b.get("cancellation_penalty_minor"),
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


GUEST_NAMES = "/admin/guest-names"


def read_guest_names(reader: AdminReader, snapshot: Snapshot) -> list[str]:
    """The guests' names booking-service keeps (of the bookings since ``--since``), each once, for the
    data scans to look for; none when booking-service has no ``GET /admin/guest-names`` (the snapshot
    says so). Only their number is kept in the snapshot."""
    service = "booking-service"
    params = _since(snapshot.since)
    found: set[str] = set()
    while True:
        body = reader.get_if_served(service, GUEST_NAMES, params)
        if body is None:
            snapshot.guest_names_unavailable = (
                f"{service} has no GET {GUEST_NAMES}: no guest name was looked for (only e-mail addresses "
                "and phone numbers)"
            )
            return []
        names = body.get("names")
        if not isinstance(names, list):
            raise ServiceUnreadable(service, f"GET {GUEST_NAMES} answered without a list of names")
        found.update(n for n in names if isinstance(n, str))
        if not body.get("next"):
            break
        params = {**params, "after": body["next"]}
    # what a scan would not look for anyway (too short) or could not be sent (too long: no stored name is)
    kept = sorted(n for n in found if len(" ".join(n.split())) >= MIN_NAME_CHARS and len(n) <= MAX_SCAN_NAME_CHARS)
    snapshot.guest_names = len(kept)
    return kept


def name_batches(names: Sequence[str], max_body_bytes: int) -> list[list[str]]:
    """``names`` in batches a data scan takes: at most ``MAX_SCAN_NAMES`` each, in a body that fits
    under the services' body limit. At least one batch (maybe empty): every scan runs once."""
    budget = max(max_body_bytes - _BODY_MARGIN, 1)
    batches: list[list[str]] = [[]]
    size = 0
    for name in names:
        cost = len(json.dumps(name).encode()) + 1
        if batches[-1] and (len(batches[-1]) >= MAX_SCAN_NAMES or size + cost > budget):
            batches.append([])
            size = 0
        batches[-1].append(name)
        size += cost
    return batches


def data_scan(reader: AdminReader, service: str, snapshot: Snapshot, batches: list[list[str]]) -> list[DataHit]:
    """``POST /admin/data-scan`` of one service, once per batch of names; the hits of every batch, each
    place once."""
    hits: dict[tuple[str, str, str, str], DataHit] = {}
    for batch in batches:
        body = reader.post(service, "/admin/data-scan", {"since": snapshot.since, "names": batch})
        for h in body.get("hits", []):
            hit = DataHit(h["kind"], service, h["table"], h["column"], h["row_key"])
            hits.setdefault((hit.kind, hit.table, hit.column, hit.row_key), hit)
        if body.get("truncated") and service not in snapshot.data_scan_truncated:
            snapshot.data_scan_truncated.append(service)
    return list(hits.values())


def read_data_scans(reader: AdminReader, snapshot: Snapshot, batches: list[list[str]]) -> None:
    for spec in SERVICES:
        snapshot.data_hits.extend(data_scan(reader, spec.name, snapshot, batches))
        snapshot.data_scanned.append(spec.name)


def read_telemetry(
    reader: AdminReader, settings: Settings, snapshot: Snapshot, batches: list[list[str]] | None = None
) -> None:
    """The compensation spans, the card scan and the data scan of the local telemetry store, when
    there is one."""
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
            data_hits = data_scan(reader, store, snapshot, batches or [[]])
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
            snapshot.data_scanned.append(store)
            snapshot.data_hits.extend(data_hits)
            return
    snapshot.spans_unavailable = why_not
    snapshot.card_scan_skipped[store] = why_not
    snapshot.data_scan_skipped[store] = why_not


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
        batches = name_batches(read_guest_names(reader, snapshot), settings.max_body_bytes)
        read_data_scans(reader, snapshot, batches)
        read_telemetry(reader, settings, snapshot, batches)
        return snapshot
    finally:
        if own:
            http.close()
