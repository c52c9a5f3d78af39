"""Cancellation terms of a rate plan, and what a cancellation refunds (no I/O).

A guest may cancel for free until ``free_cancellation_hours`` before check-in (check-in is at
``CHECK_IN_TIME`` in the property's time zone); from then on the first ``penalty_nights`` nights of
the stay, with their share of the taxes, are kept. The terms are fixed when the stay is quoted: a
booking keeps the terms it was sold with, whatever the rate plan says later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bookline.domain.money import Money

CHECK_IN_TIME = time(15, 0)
DEFAULT_FREE_CANCELLATION_HOURS = 48
DEFAULT_PENALTY_NIGHTS = 1


@dataclass(frozen=True)
class TermsPolicy:
    """The terms a rate plan sells its rooms on."""

    free_cancellation_hours: int = DEFAULT_FREE_CANCELLATION_HOURS
    penalty_nights: int = DEFAULT_PENALTY_NIGHTS


@dataclass(frozen=True)
class CancellationTerms:
    """The terms of one quoted stay: when cancelling stops being free, and what it then costs."""

    free_cancellation_hours: int
    free_until: datetime  # aware (UTC); cancelling before it refunds everything
    penalty: Money  # kept when cancelled at or after free_until
    time_zone: str  # the property's IANA time zone, in which the deadline is shown

    def penalty_at(self, cancelled_at: datetime) -> Money:
        """What a cancellation at ``cancelled_at`` keeps."""
        return Money.zero(self.penalty.currency) if cancelled_at < self.free_until else self.penalty

    def refund_of(self, paid: Money, cancelled_at: datetime) -> tuple[Money, Money]:
        """(refund, penalty) of cancelling a stay that cost ``paid``; the penalty never exceeds it."""
        penalty = min(self.penalty_at(cancelled_at).minor, paid.minor)
        return Money(paid.minor - penalty, paid.currency), Money(penalty, paid.currency)

    def local_deadline(self) -> datetime:
        """``free_until`` in the property's time zone."""
        return self.free_until.astimezone(ZoneInfo(self.time_zone))

    def as_dict(self) -> dict[str, object]:
        return {
            "free_cancellation_hours": self.free_cancellation_hours,
            "free_cancellation_until": self.free_until.isoformat(),
            "free_cancellation_until_local": self.local_deadline().isoformat(),
            "time_zone": self.time_zone,
            "penalty_minor": self.penalty.minor,
            "currency": self.penalty.currency,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CancellationTerms:
        return cls(
            free_cancellation_hours=int(data["free_cancellation_hours"]),  # type: ignore[call-overload]
            free_until=datetime.fromisoformat(str(data["free_cancellation_until"])).astimezone(UTC),
            penalty=Money(int(data["penalty_minor"]), str(data["currency"])),  # type: ignore[call-overload]
            time_zone=str(data["time_zone"]),
        )


def check_in_at(check_in: date, time_zone: str) -> datetime:
    """The moment of check-in, in UTC."""
    return datetime.combine(check_in, CHECK_IN_TIME, tzinfo=ZoneInfo(time_zone)).astimezone(UTC)


def terms_of(
    policy: TermsPolicy,
    *,
    check_in: date,
    time_zone: str,
    night_amounts: list[int],
    tax_bp: int,
    currency: str,
) -> CancellationTerms:
    """The terms of a stay priced night by night: the penalty is its first ``penalty_nights`` nights
    plus their taxes, at most the whole stay."""
    kept = Money(sum(night_amounts[: policy.penalty_nights]), currency)
    penalty = kept + kept.percent(tax_bp)
    whole = Money(sum(night_amounts), currency)
    total = whole + whole.percent(tax_bp)
    return CancellationTerms(
        free_cancellation_hours=policy.free_cancellation_hours,
        free_until=check_in_at(check_in, time_zone) - timedelta(hours=policy.free_cancellation_hours),
        penalty=min(penalty, total),
        time_zone=time_zone,
    )
