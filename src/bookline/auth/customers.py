"""Customer identity: a bearer JWT whose ``sub`` is the customer.

Tokens are verified with PyJWT, never by hand. Two sources of keys:

- the local issuer (default): ``bookline up`` keeps an EC key pair in ``DATA_DIR/keys/issuer.pem``
  and ``bookline token`` signs tokens with it; booking-service reads only the public half;
- an OpenID Connect provider: ``BOOKLINE_JWT_JWKS_URL`` (its ``jwks_uri``) with ``BOOKLINE_JWT_ISSUER``
  and ``BOOKLINE_JWT_AUDIENCE``; keys are fetched and cached by PyJWT's ``PyJWKClient``.

Only asymmetric algorithms are accepted, so a token signed with ``alg: none`` or with the public key
as an HMAC secret is refused. The token itself is never logged, traced or stored.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from bookline.auth.keys import ALGORITHM, ISSUER_KEY, KeyDir, MissingKeyError
from bookline.config import Settings
from bookline.domain.errors import BooklineError
from bookline.redaction import looks_like_card_number

LOCAL_ISSUER = "bookline-local"
ADMIN_SCOPE = "admin"
# what an identity provider may sign with; never "none" and never an HMAC (a public key is no secret)
ASYMMETRIC_ALGORITHMS = ["ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"]
# a customer id: opaque, as identity providers make them (a UUID, "auth0|5f...", "google-oauth2|10..."),
# never an e-mail address
SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:|-]{0,63}$")
_VERIFIED_CACHE = 4096


class Unauthenticated(BooklineError):
    """401: no token, or one that does not prove who the caller is."""

    status, code = 401, "invalid_token"


class Forbidden(BooklineError):
    status, code = 403, "forbidden"


@dataclass(frozen=True)
class Customer:
    """The caller of the public API: ``sub`` of its token, and whether it holds the admin scope."""

    user_id: str
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        return self.admin or owner == self.user_id


def subject_error(sub: Any) -> str | None:
    """Why a token's ``sub`` cannot be a Bookline customer id, or None."""
    if not isinstance(sub, str) or not SUBJECT.match(sub):
        return "the token's sub is not a customer id (letters, digits and _ . : | -, at most 64)"
    if looks_like_card_number(sub):
        return "the token's sub must not look like a card number"
    return None


class CustomerTokens:
    """Verifies customer tokens for booking-service."""

    def __init__(self, settings: Settings) -> None:
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway_s
        self._jwks: jwt.PyJWKClient | None = None
        self._public_key: Any = None
        if settings.jwt_jwks_url:
            if not settings.jwt_issuer:
                raise ValueError("BOOKLINE_JWT_JWKS_URL needs BOOKLINE_JWT_ISSUER (the provider's issuer)")
            self.issuer = settings.jwt_issuer
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=3600, timeout=5)
            self.algorithms = ASYMMETRIC_ALGORITHMS
        else:
            self.issuer = settings.jwt_issuer or LOCAL_ISSUER
            self._key_dir = KeyDir(settings.key_dir)
            self.algorithms = [ALGORITHM]
        # a token seen before is not verified again until it expires: same bytes, same signature
        self._verified: OrderedDict[str, tuple[float, Customer]] = OrderedDict()

    def _local_key(self) -> Any:
        if self._public_key is None:
            key = self._key_dir.load_public(ISSUER_KEY)
            if key is None:
                raise MissingKeyError(
                    f"no customer-token issuer key in {self._key_dir.path}: `bookline keys` or `bookline up` makes one"
                )
            self._public_key = key
        return self._public_key

    async def verify(self, token: str) -> Customer:
        """The customer a token proves, or ``Unauthenticated`` (401) saying why not."""
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached[0] > now:
            self._verified.move_to_end(token)
            return cached[1]
        if self._jwks is not None:
            try:
                # PyJWKClient fetches with urllib: off the event loop
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
                raise Unauthenticated(
                    "invalid_token", f"the token's signing key is unknown: {type(exc).__name__}"
                ) from None
        else:
            key = self._local_key()
        claims = self._decode(token, key)
        problem = subject_error(claims.get("sub"))
        if problem is not None:
            raise Unauthenticated("invalid_token", problem)
        scopes = claims.get("scope", "")
        scopes = scopes.split() if isinstance(scopes, str) else scopes if isinstance(scopes, list) else []
        customer = Customer(claims["sub"], admin=ADMIN_SCOPE in scopes)
        self._verified[token] = (float(claims["exp"]), customer)
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return customer

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token_expired", "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("invalid_token", f"the token is not for this audience ({self.audience})") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("invalid_token", "the token is from another issuer") from None
        except jwt.InvalidAlgorithmError:
            raise Unauthenticated("invalid_token", "the token's algorithm is not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated("invalid_token", f"the token has no {exc.claim} claim") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid_token", "the token is malformed or its signature is wrong") from None


class LocalIssuer:
    """The local issuer of ``bookline up``: signs customer tokens with the key in ``DATA_DIR/keys``,
    what an identity provider does for a deployment. Load generators keep one and mint a token per
    simulated customer (the key is read once)."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.jwt_issuer or LOCAL_ISSUER
        self.audience = settings.jwt_audience
        self._key = KeyDir(settings.key_dir).load_private(ISSUER_KEY)  # MissingKeyError when never provisioned

    def mint(self, user_id: str, *, admin: bool = False, ttl_s: float = 3600.0) -> str:
        problem = subject_error(user_id)
        if problem is not None:
            raise ValueError(problem.replace("the token's sub", "a user id"))
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "iat": now,
            "exp": now + int(ttl_s),
            "jti": uuid.uuid4().hex,
        }
        if admin:
            claims["scope"] = ADMIN_SCOPE
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": ISSUER_KEY})


def mint_customer_token(settings: Settings, user_id: str, *, admin: bool = False, ttl_s: float = 3600.0) -> str:
    """A token of the local issuer (``bookline token``): what an identity provider gives a customer."""
    return LocalIssuer(settings).mint(user_id, admin=admin, ttl_s=ttl_s)
