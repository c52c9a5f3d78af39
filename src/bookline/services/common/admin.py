"""What the read-only admin endpoints of every service (and of the telemetry store) share: the
bearer-token guard, the query parameters and keyset pagination. ``bookline audit`` reads them.

The endpoints live under ``/admin``, outside the OpenAPI schema, each service's in its own
``services/<name>/admin.py``. A request needs ``Authorization: Bearer <token>``; the token is compared
in constant time and never appears in an answer, a log line or a span (the HTTP instrumentation
records no request header unless told to with ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``).

Lists are paged by key, not by offset: ``after`` is an opaque cursor (the key of the last row of the
previous page) and ``next`` in an answer is the cursor of the following page, or null at the end. A
page is a few thousand rows, so an audit of a hundred thousand bookings is a few dozen requests.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Date, MetaData, Select, literal, tuple_
from sqlalchemy.engine import Row
from sqlalchemy.sql.elements import ColumnElement

from bookline.adapters.db import Database
from bookline.admin_token import resolve_admin_token
from bookline.config import Settings
from bookline.domain.errors import BooklineError
from bookline.services.common.app import error_response
from bookline.services.common.data_scan import DataScan, GuestNames, check_allowed, scan_tables

DEFAULT_PAGE_ROWS = 5000
MAX_PAGE_ROWS = 20000


class AdminUnauthorized(BooklineError):
    status, code = 401, "admin_unauthorized"


class AdminDisabled(BooklineError):
    status, code = 403, "admin_disabled"


class InvalidCursor(BooklineError):
    status, code = 400, "invalid_cursor"


class InvalidScanRequest(BooklineError):
    status, code = 422, "validation_error"


class MalformedScanRequest(BooklineError):
    status, code = 400, "malformed_json"


# the query parameters every list endpoint takes
Since = Annotated[
    float | None, Query(ge=0, description="only rows created (or sent, or started) at or after this unix time")
]
After = Annotated[str | None, Query(max_length=4096, description="the `next` cursor of the previous page")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_ROWS, description="rows per page")]


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def admin_router(settings: Settings) -> APIRouter:
    """A router under ``/admin`` (hidden from OpenAPI) whose every route needs the admin token.

    Without a token configured, every admin route answers 403 ``admin_disabled``; with one, a
    missing or different bearer token answers 401 ``admin_unauthorized``.
    """
    expected = resolve_admin_token(settings)
    expected_bytes = expected.encode() if expected is not None else None

    async def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if expected_bytes is None:
            raise AdminDisabled(message="this service has no admin token configured (BOOKLINE_ADMIN_TOKEN)")
        presented = _bearer(authorization)
        if presented is None or not secrets.compare_digest(presented.encode(), expected_bytes):
            raise AdminUnauthorized(message="the admin endpoints need Authorization: Bearer <admin token>")

    return APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(require_admin)])


# ---- the data scan's request ------------------------------------------------------------------------

MAX_SCAN_NAMES = 10_000
MAX_SCAN_NAME_CHARS = 200
_SCAN_BODY = f'{{"since": unix time or null, "names": [at most {MAX_SCAN_NAMES} strings of at most {MAX_SCAN_NAME_CHARS} characters]}}'


@dataclass(frozen=True)
class ScanRequest:
    """``POST /admin/data-scan``'s body: rows written since when, and the guests' names to look for."""

    since: float | None
    names: GuestNames


async def scan_request(request: Request) -> ScanRequest:
    """The body of a data scan, read and checked here rather than by a model: the names are personal
    data, and no answer, log line or span may echo one. A body that is not what is expected answers a
    fixed message (which field, never its value), whatever it held."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise MalformedScanRequest(message="the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidScanRequest(message=f"the body must be a JSON object: {_SCAN_BODY}")
    since = body.get("since")
    if since is not None and (
        isinstance(since, bool) or not isinstance(since, (int, float)) or not math.isfinite(since) or since < 0
    ):
        raise InvalidScanRequest(message="since: a unix time (a number, at least 0) or null")
    names = body.get("names", [])
    if names is None:
        names = []
    if (
        not isinstance(names, list)
        or len(names) > MAX_SCAN_NAMES
        or not all(isinstance(n, str) and len(n) <= MAX_SCAN_NAME_CHARS for n in names)
    ):
        raise InvalidScanRequest(
            message=f"names: a list of at most {MAX_SCAN_NAMES} strings of at most {MAX_SCAN_NAME_CHARS} characters"
        )
    return ScanRequest(float(since) if since is not None else None, GuestNames(names))


ScanBody = Annotated[ScanRequest, Depends(scan_request)]


def database_admin_router(
    settings: Settings, db: Database, metadata: MetaData, owner: str, *, allowed: Iterable[tuple[str, str]] = ()
) -> APIRouter:
    """``admin_router`` with the scans of a service's own database, both never returning a value:

    - ``GET /admin/card-scan``: where ``owner``'s tables hold something that is a card number;
    - ``POST /admin/data-scan``: where they hold personal data (a card number, an e-mail address, a
      phone number, or one of the guests' names the request gives), but in the ``allowed`` columns,
      (table, column), where ``owner`` may keep them (``data_scan.GUEST_COLUMNS`` for the two services
      that keep the guest's details, nothing for the others).
    """
    router = admin_router(settings)
    allowed = check_allowed(metadata, allowed)

    async def card_scan(since: Since = None) -> dict[str, Any]:
        return (await scan_tables(db, metadata.sorted_tables, since=since)).body()

    card_scan.__doc__ = f"Where {owner}'s database holds something that is a card number (never the value)."
    router.add_api_route("/card-scan", card_scan, methods=["GET"])

    async def data_scan(body: ScanBody) -> dict[str, Any]:
        scan = DataScan(names=body.names, allowed=allowed)
        return (await scan_tables(db, metadata.sorted_tables, scan, since=body.since)).body()

    data_scan.__doc__ = (
        f"Where {owner}'s database holds a card number, an e-mail address, a phone number or one of the "
        "given guests' names (never the value), outside the columns where it may keep them."
    )
    router.add_api_route("/data-scan", data_scan, methods=["POST"])
    return router


def mount_admin(app: FastAPI, router: APIRouter) -> None:
    """Serve ``router``; a 401 also says which scheme it wants (``WWW-Authenticate``)."""
    app.include_router(router)

    async def unauthorized(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AdminUnauthorized)
        response = error_response(exc.status, exc.code, exc.message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="bookline-admin"'
        return response

    app.add_exception_handler(AdminUnauthorized, unauthorized)


# ---- keyset pagination ----------------------------------------------------------------------------


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, date) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def cursor_values(cursor: str, width: int) -> list[Any]:
    """The ``width`` plain values (strings, numbers) a cursor carries; 400 ``invalid_cursor`` otherwise."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        values = None
    if (
        not isinstance(values, list)
        or len(values) != width
        or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values)
    ):
        raise InvalidCursor(message="the cursor is not one this endpoint gave out")
    return values


def decode_cursor(cursor: str, keys: Sequence[ColumnElement[Any]]) -> list[Any]:
    """The key values a cursor carries, typed like ``keys``; 400 ``invalid_cursor`` otherwise."""
    values = cursor_values(cursor, len(keys))
    try:
        return [
            date.fromisoformat(v) if isinstance(key.type, Date) and isinstance(v, str) else v
            for key, v in zip(keys, values, strict=True)
        ]
    except ValueError:
        raise InvalidCursor(message="the cursor is not one this endpoint gave out") from None


@dataclass(frozen=True)
class Page:
    rows: list[Row[Any]]
    next: str | None


def created_since(query: Select[Any], column: ColumnElement[Any], since: float | None) -> Select[Any]:
    """``query`` limited to rows whose ``column`` (a unix time) is at or after ``since``, if given."""
    return query if since is None else query.where(column >= since)


async def keyset_page(
    conn: Any, query: Select[Any], keys: Sequence[ColumnElement[Any]], *, after: str | None, limit: int
) -> Page:
    """One page of ``query`` in the order of ``keys`` (a unique key of its rows), after a cursor.

    ``keys`` must be among the selected columns; the answer's ``next`` is the cursor of the page
    after this one, or None when this is the last.
    """
    if after is not None:
        values = decode_cursor(after, keys)
        bound = [literal(v, type_=k.type) for k, v in zip(keys, values, strict=True)]
        query = query.where(keys[0] > bound[0] if len(keys) == 1 else tuple_(*keys) > tuple_(*bound))
    rows = (await conn.execute(query.order_by(*keys).limit(limit + 1))).all()
    if len(rows) <= limit:
        return Page(list(rows), None)
    last = rows[limit - 1]._mapping
    return Page(list(rows[:limit]), encode_cursor([last[k] for k in keys]))
