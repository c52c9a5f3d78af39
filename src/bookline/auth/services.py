"""Service credentials: each service proves who it is to another with a short-lived JWT (ES256)
signed with its own key; the callee checks it against the caller's public key and its own list of
who may call the route.

A token names the caller (``iss`` = ``sub`` = its service.name, ``kid`` = its key) and the callee
(``aud``), and lives ``service_token_ttl_s`` (5 minutes). The caller signs one per callee and reuses it
until half its life is gone; the callee remembers a token it verified until it expires, so the
signature costs are paid once per few minutes, not per request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import jwt

from bookline.auth.keys import ALGORITHM, KeyDir
from bookline.config import SERVICE_BY_NAME, SERVICES, TELEMETRY_STORE, Settings

_VERIFIED_CACHE = 1024
# the names a service credential can carry: every service (the store only receives)
CALLERS = frozenset(s.name for s in SERVICES)


class ServiceCredentials:
    """What a service presents when it calls another: ``Authorization: Bearer <its token>``."""

    def __init__(self, name: str, key_dir: KeyDir, *, ttl_s: float = 300.0) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self._key = key_dir.load_private(SERVICE_BY_NAME[name].key)
        self._tokens: dict[str, tuple[float, str]] = {}

    @classmethod
    def of(cls, name: str, settings: Settings) -> ServiceCredentials:
        return cls(name, KeyDir(settings.key_dir), ttl_s=settings.service_token_ttl_s)

    def token_for(self, audience: str) -> str:
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is not None and cached[0] > now:
            return cached[1]
        claims = {"iss": self.name, "sub": self.name, "aud": audience, "iat": int(now), "exp": int(now + self.ttl_s)}
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": SERVICE_BY_NAME[self.name].key})
        self._tokens[audience] = (now + self.ttl_s / 2, token)
        return token

    def headers_for(self, audience: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_for(audience)}"}


class InvalidServiceToken(Exception):
    """The token does not prove a Bookline service is calling; the message says why."""


class ServiceTokens:
    """Verifies service credentials presented to the service ``audience``."""

    def __init__(self, audience: str, key_dir: KeyDir) -> None:
        self.audience = audience
        self._key_dir = key_dir
        self._keys: dict[str, Any] = {}
        self._verified: OrderedDict[str, tuple[float, str]] = OrderedDict()

    @classmethod
    def of(cls, audience: str, settings: Settings) -> ServiceTokens:
        return cls(audience, KeyDir(settings.key_dir))

    def _key_of(self, caller: str) -> Any:
        key = self._keys.get(caller)
        if key is None:
            key = self._key_dir.load_public(SERVICE_BY_NAME[caller].key)
            if key is None:
                raise InvalidServiceToken(f"no public key of {caller}")
            self._keys[caller] = key
        return key

    def verify(self, token: str) -> str:
        """The service.name of the caller the token proves."""
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise InvalidServiceToken("the service token is malformed") from None
        caller = unverified.get("iss")
        if caller not in CALLERS:
            raise InvalidServiceToken("the service token names no Bookline service")
        try:
            claims = jwt.decode(
                token,
                self._key_of(caller),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=caller,
                leeway=5,
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidServiceToken("the service token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidServiceToken(f"the service token is not valid ({type(exc).__name__})") from None
        if claims["sub"] != caller:
            raise InvalidServiceToken("the service token's sub is not its issuer")
        self._verified[token] = (float(claims["exp"]), caller)
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return caller


TELEMETRY_AUDIENCE = TELEMETRY_STORE.name
