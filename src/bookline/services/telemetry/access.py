"""Who may write to and read from the telemetry store.

Writing (the OTLP receiver): a Bookline service with its service credential, which may send only its
own telemetry (every resource's ``service.name`` must be its own), or a sender holding the ingest
token (``BOOKLINE_TELEMETRY_INGEST_TOKEN``, else ``DATA_DIR/keys/ingest.token``): a Collector, which
forwards every service's telemetry and sets it with its ``headers`` setting. Anyone else: 401.

Reading (the API and the viewer): open while the store listens on loopback only, as ``make run`` does;
bound to any other address, every read needs the admin token, as a bearer token or through the
viewer's login page, which keeps a session cookie (a JWT signed with a key derived from the admin
token, 12 hours).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
from typing import Any

import jwt

from bookline.admin_token import resolve_admin_token
from bookline.auth.keys import KeyDir
from bookline.auth.services import TELEMETRY_AUDIENCE, InvalidServiceToken, ServiceTokens
from bookline.config import Settings

SESSION_COOKIE = "bookline_viewer"
SESSION_S = 12 * 3600
ANY_SERVICE = "*"


class IngestRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bearer(authorization: str | None) -> str | None:
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


class StoreAccess:
    def __init__(self, settings: Settings) -> None:
        self._service_tokens = ServiceTokens.of(TELEMETRY_AUDIENCE, settings)
        configured = settings.telemetry_ingest_token
        if configured is not None and configured.get_secret_value().strip():
            self._ingest = configured.get_secret_value().strip()
        else:
            path = KeyDir(settings.key_dir).ingest_token
            self._ingest = path.read_text(encoding="utf-8").strip() if path.exists() else None
        self.reads_open = is_loopback(settings.telemetry_host)
        admin = resolve_admin_token(settings)
        self._admin = admin.encode() if admin else None
        # the session cookie's key: derived from the admin token, never the token itself
        self._session_key = hashlib.sha256(b"bookline-viewer-session\0" + self._admin).digest() if admin else None

    # ---- writing ------------------------------------------------------------------------------

    def sender(self, authorization: str | None) -> str:
        """The service an export comes from, ``ANY_SERVICE`` for the ingest token; refuses anyone else."""
        presented = _bearer(authorization)
        if presented is None:
            raise IngestRefused(401, "unauthenticated", "an export needs a service credential or the ingest token")
        if self._ingest is not None and hmac.compare_digest(presented.encode(), self._ingest.encode()):
            return ANY_SERVICE
        try:
            return self._service_tokens.verify(presented)
        except InvalidServiceToken as exc:
            raise IngestRefused(401, "unauthenticated", str(exc)) from None

    @staticmethod
    def check_resources(sender: str, resources: list[str]) -> None:
        """A service sends only its own telemetry: every resource names it."""
        if sender == ANY_SERVICE:
            return
        for resource in resources:
            name = json.loads(resource).get("service.name") if resource else None
            if name != sender:
                raise IngestRefused(403, "sender_mismatch", f"{sender} may export only its own telemetry")

    # ---- reading ------------------------------------------------------------------------------

    def may_read(self, authorization: str | None, cookie: str | None) -> bool:
        if self.reads_open:
            return True
        if self._admin is None:
            return False
        presented = _bearer(authorization)
        if presented is not None and hmac.compare_digest(presented.encode(), self._admin):
            return True
        return cookie is not None and self._valid_session(cookie)

    def login(self, token: str) -> str | None:
        """A session cookie's value for the admin token, or None for anything else."""
        if self._admin is None or self._session_key is None or not hmac.compare_digest(token.encode(), self._admin):
            return None
        now = int(time.time())
        return jwt.encode({"sub": "viewer", "iat": now, "exp": now + SESSION_S}, self._session_key, algorithm="HS256")

    def _valid_session(self, cookie: str) -> bool:
        assert self._session_key is not None
        try:
            jwt.decode(cookie, self._session_key, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        except jwt.InvalidTokenError:
            return False
        return True


def resources_of(decoded: Any) -> list[str]:
    """The resources (stored JSON) of a decoded export; metric series carry their service instead."""
    if hasattr(decoded, "resources"):
        return list(decoded.resources)
    return [json.dumps({"service.name": series.service}) for series in getattr(decoded, "series", [])]
