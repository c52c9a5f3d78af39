"""A deployment plugs in its own OpenID Connect provider: ``BOOKLINE_JWT_ISSUER``,
``BOOKLINE_JWT_AUDIENCE`` and ``BOOKLINE_JWT_JWKS_URL``. Here the provider is a JWKS this test serves
(RSA keys, as most providers use); booking-service fetches it, caches it, and accepts only tokens
signed by its keys, from its issuer, for its audience."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import start_stack
from support.booking import Client

ISSUER = "https://id.example.test/"
AUDIENCE = "bookline-api"


class Provider:
    """An identity provider's signing keys, and its JWKS served on a local port."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "key-1"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = json.dumps({"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}).encode()
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                provider.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(provider.jwks)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def token(self, sub: str, *, kid: str | None = None, key: object = None, **claims: object) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    found = Provider()
    yield found
    found.server.shutdown()


@pytest.fixture(scope="module")
def oidc_stack(tmp_path_factory: pytest.TempPathFactory, provider: Provider):
    stack = start_stack(
        tmp_path_factory.mktemp("oidc"), jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_jwks_url=provider.jwks_url
    )
    yield stack
    stack.stop()


def _book(stack, token: str):
    client = Client.for_stack(stack)
    return client.http.post(
        f"{client.booking_url}/bookings",
        json=client.body(),
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
    )


def test_a_token_of_the_configured_provider_books(oidc_stack, provider: Provider):
    response = _book(oidc_stack, provider.token("auth0|5f7c8ec7c33c6c004bbafe82"))
    assert response.status_code == 201, response.text
    client = Client.for_stack(oidc_stack)
    booking = client.http.get(
        f"{client.booking_url}/bookings/{response.json()['booking_id']}",
        headers={"Authorization": f"Bearer {provider.token('auth0|5f7c8ec7c33c6c004bbafe82')}"},
    ).json()
    assert booking["user_id"] == "auth0|5f7c8ec7c33c6c004bbafe82"


def test_tokens_the_provider_did_not_issue_for_bookline_are_refused(oidc_stack, provider: Provider):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "wrong audience": provider.token("u1", aud="another-api"),
        "wrong issuer": provider.token("u1", iss="https://elsewhere.example/"),
        "unknown key id": provider.token("u1", kid="key-9"),
        "signed by another key under the provider's kid": provider.token("u1", key=stranger),
        "expired": provider.token("u1", exp=int(time.time()) - 600),
    }
    for name, token in refused.items():
        response = _book(oidc_stack, token)
        assert response.status_code == 401, f"{name}: {response.text}"
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name


def test_the_local_issuers_tokens_are_not_accepted_once_a_provider_is_configured(oidc_stack):
    response = _book(oidc_stack, Client.for_stack(oidc_stack).token("user-1"))
    assert response.status_code == 401


def test_the_jwks_is_fetched_once_and_cached(oidc_stack, provider: Provider):
    before = provider.fetches
    for i in range(3):
        assert _book(oidc_stack, provider.token(f"cached-{i}")).status_code == 201
    assert provider.fetches - before <= 1


def test_a_provider_without_an_issuer_is_a_configuration_error(tmp_path: Path, provider: Provider):
    from bookline.auth.customers import CustomerTokens
    from bookline.config import Settings

    with pytest.raises(ValueError, match="BOOKLINE_JWT_ISSUER"):
        CustomerTokens(Settings(data_dir=tmp_path, jwt_jwks_url=provider.jwks_url))
