"""The signing keys of Bookline: one EC P-256 key pair per service (its service credential) and one
for the local customer-token issuer of ``bookline up``.

On one machine they live in ``DATA_DIR/keys`` (``<name>.pem`` private, mode 0600; ``<name>.pub.pem``
public); a deployment mounts the same files from a secret. A service reads its own private key and
the public keys of the others; nobody else's private key.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bookline.auth.files import create_secret_once, private_dir, write_secret

ALGORITHM = "ES256"
ISSUER_KEY = "issuer"  # the local customer-token issuer of `bookline up`
INGEST_TOKEN_FILE = "ingest.token"  # the telemetry store's ingest token, for a Collector


class MissingKeyError(RuntimeError):
    """A key this process needs was never provisioned."""


@dataclass(frozen=True)
class KeyDir:
    """The key files under one directory."""

    path: Path

    def private(self, name: str) -> Path:
        return self.path / f"{name}.pem"

    def public(self, name: str) -> Path:
        return self.path / f"{name}.pub.pem"

    @property
    def ingest_token(self) -> Path:
        return self.path / INGEST_TOKEN_FILE

    def ensure_pair(self, name: str) -> None:
        """Create the key pair ``name`` unless it exists (safe when several processes race)."""
        private_dir(self.path)
        if not self.private(name).exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            create_secret_once(self.private(name), pem)
        if not self.public(name).exists():
            public = load_private_key(self.private(name)).public_key()
            write_secret(
                self.public(name),
                public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            )

    def ensure_ingest_token(self) -> str:
        private_dir(self.path)
        create_secret_once(self.ingest_token, (secrets.token_urlsafe(32) + "\n").encode())
        return self.ingest_token.read_text(encoding="utf-8").strip()

    def load_private(self, name: str) -> ec.EllipticCurvePrivateKey:
        return load_private_key(self.private(name))

    def load_public(self, name: str) -> ec.EllipticCurvePublicKey | None:
        path = self.public(name)
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except FileNotFoundError:
            return None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise MissingKeyError(f"{path} is not an EC public key")
        return key


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise MissingKeyError(
            f"no key at {path}: `bookline keys` (or `bookline up`) provisions the keys of every service"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise MissingKeyError(f"{path} is not an EC private key")
    return key
