"""What ``bookline up`` (and ``bookline keys``) provisions so that nobody has to: a key pair per
service, the local issuer's key pair and the telemetry store's ingest token, under ``DATA_DIR/keys``
(a 0700 directory of 0600 files). Existing keys are kept."""

from __future__ import annotations

from bookline.auth.keys import ISSUER_KEY, KeyDir
from bookline.config import SERVICES, Settings


def provision_keys(settings: Settings) -> KeyDir:
    keys = KeyDir(settings.key_dir)
    for service in SERVICES:
        keys.ensure_pair(service.key)
    keys.ensure_pair(ISSUER_KEY)
    keys.ensure_ingest_token()
    return keys
