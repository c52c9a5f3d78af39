"""How many processes of each service ``bookline up --replicas`` runs, and where that is allowed.

Replicas of a service share its port: each binds it with ``SO_REUSEPORT`` and the kernel spreads the
connections over them, so callers need no list of addresses. They share their state through
PostgreSQL and NATS JetStream; SQLite files and the embedded queue are one machine's, one process's
each, so more than one replica is refused there.
"""

from __future__ import annotations

from bookline.adapters.queue import NATS_SCHEMES
from bookline.config import SERVICE_BY_NAME, SERVICES, Settings

MAX_REPLICAS = 16


class ReplicasError(ValueError):
    """A ``--replicas`` value that cannot be run."""


def parse_replicas(text: str | None) -> dict[str, int]:
    """``"2"`` (every service) or ``"booking=3,availability=2"`` (by service key or name; the others
    run one) as {service.name: count}."""
    counts = {s.name: 1 for s in SERVICES}
    if not text:
        return counts
    text = text.strip()
    if text.isdigit():
        return {name: _count(text) for name in counts}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        spec = SERVICE_BY_NAME.get(name.strip())
        if not sep or spec is None or spec not in SERVICES:
            valid = ", ".join(s.key for s in SERVICES)
            raise ReplicasError(f"--replicas takes N or SERVICE=N,...; {part.strip()!r} is neither (services: {valid})")
        counts[spec.name] = _count(value.strip())
    return counts


def _count(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_REPLICAS:
        raise ReplicasError(f"a replica count is a whole number from 1 to {MAX_REPLICAS}, not {value!r}")
    return int(value)


def check_backend(counts: dict[str, int], settings: Settings) -> None:
    """Refuse replicas where the state they would share is a single process's."""
    many = sorted(name for name, n in counts.items() if n > 1)
    if not many:
        return
    missing = []
    if not (settings.database_url or "").startswith("postgresql"):
        missing.append("PostgreSQL (BOOKLINE_DATABASE_URL=postgresql+asyncpg://...)")
    if not (settings.queue_url or "").startswith(NATS_SCHEMES):
        missing.append("NATS JetStream (BOOKLINE_QUEUE_URL=nats://...)")
    if missing:
        raise ReplicasError(
            f"more than one replica of {', '.join(many)} needs {' and '.join(missing)}: SQLite files and the "
            "embedded queue belong to one process each"
        )
