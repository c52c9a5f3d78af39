"""The catalogue of domain errors. Each has a stable machine-readable ``code`` and an HTTP status,
mapped to a response once, at the edge (``bookline.services.common``)."""

from __future__ import annotations

from typing import Any


class BooklineError(Exception):
    status = 400
    code = "bad_request"
    # HTTP headers the answer carries (WWW-Authenticate of a 401, Retry-After of a 429)
    headers: dict[str, str] | None = None

    def __init__(self, code: str | None = None, message: str = "", **details: Any) -> None:
        self.code = code or self.code
        self.message = message or self.code.replace("_", " ")
        self.details = details
        super().__init__(self.message)

    def to_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidRequest(BooklineError):
    status, code = 422, "validation_error"


class InvalidStay(InvalidRequest):
    code = "invalid_stay"


class NotFound(BooklineError):
    status, code = 404, "not_found"


class Conflict(BooklineError):
    status, code = 409, "conflict"


class Unavailable(Conflict):
    code = "unavailable"


class LockContention(Conflict):
    code = "lock_contention"


class HoldExpired(Conflict):
    code = "hold_expired"


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"


class IdempotencyKeyReused(BooklineError):
    status, code = 422, "idempotency_key_reused"


class PaymentDeclined(BooklineError):
    status, code = 402, "payment_declined"


class DependencyFailed(BooklineError):
    """A service Bookline depends on failed (5xx) or could not be reached."""

    status, code = 502, "dependency_failed"


class DependencyUnavailable(DependencyFailed):
    status, code = 503, "dependency_unavailable"


class DependencyTimeout(DependencyFailed):
    status, code = 504, "dependency_timeout"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class RateLimited(BooklineError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message=message, retry_after_s=retry_after_s)
        self.headers = {"Retry-After": str(retry_after_s)}
