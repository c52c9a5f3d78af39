"""What a run saw: per operation, the outcomes by code and the latencies, and their percentiles.

An outcome is the HTTP status with the error code of Bookline's error body (``201``,
``409 lock_contention``, ``402 payment_declined``), or one of the outcomes without an answer:
``transport_error`` (refused or reset: a crashed service), ``timeout``, ``dropped`` (the arrival
found ``--concurrency`` requests in flight and was not sent). A duplicate submit whose answer differs
from the original's is ``duplicate_mismatch``. A failure of the card tokenization before a booking is
its outcome prefixed with ``tokenize`` (``tokenize 503``). ``client_error TYPE`` is a bug of the
generator itself, counted so that it cannot stall the run.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TRANSPORT_ERROR = "transport_error"
TIMEOUT = "timeout"
DROPPED = "dropped"
DUPLICATE_MISMATCH = "duplicate_mismatch"
CLIENT_ERROR = "client_error"  # a bug of the generator itself, with the exception's type
TOKENIZE_PREFIX = "tokenize "
PERCENTILES = (50, 95, 99)

# an error code is Bookline's snake_case vocabulary; anything else in that field is not shown
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]{0,59}$")


def error_code(body: Any) -> str | None:
    """The ``error.code`` of a Bookline error body, when there is a well-formed one."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE.match(code) else None


def outcome_key(status: int, body: Any) -> str:
    """``201``, ``409 lock_contention``, ``500``: the status, and the error code when there is one."""
    code = error_code(body) if status >= 400 else None
    return f"{status} {code}" if code else str(status)


def is_ok(outcome: str) -> bool:
    return outcome[:1] == "2"


def percentile(sorted_values: list[float], p: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least ``p`` % of the values at or
    below it (so p50 of 1..100 is 50 and p99 of 10 values is the largest); None without values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class OperationStats:
    """One operation's outcomes, and the latencies of the arrivals that were sent."""

    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        """Arrivals of this operation that were sent and finished (dropped ones are not)."""
        return len(self.latencies_ms)

    def latency_summary(self) -> dict[str, float | None]:
        ordered = sorted(self.latencies_ms)
        summary = {f"p{p}": _ms(percentile(ordered, p)) for p in PERCENTILES}
        summary["max"] = _ms(ordered[-1]) if ordered else None
        return summary

    def summary(self, duration_s: float) -> dict[str, Any]:
        return {
            "count": self.count,
            "rate_per_s": round(self.count / duration_s, 3) if duration_s > 0 else 0.0,
            "latency_ms": self.latency_summary(),
            "outcomes": dict(sorted(self.outcomes.items())),
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class RunStats:
    """The counters of a whole run; the progress display reads them while it runs."""

    operations: dict[str, OperationStats]
    sent: int = 0
    in_flight: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0

    @classmethod
    def for_operations(cls, names: tuple[str, ...]) -> RunStats:
        return cls({name: OperationStats() for name in names})

    def started(self) -> None:
        self.sent += 1
        self.in_flight += 1

    def finished(self, operation: str, outcome: str, latency_ms: float) -> None:
        self.in_flight -= 1
        stats = self.operations[operation]
        stats.latencies_ms.append(latency_ms)
        stats.outcomes[outcome] += 1
        if is_ok(outcome):
            self.ok += 1
        else:
            self.errors += 1

    def was_dropped(self, operation: str) -> None:
        self.dropped += 1
        self.operations[operation].outcomes[DROPPED] += 1
