"""The audit's report: a Rich rendering for the terminal (each check with its verdict and counts, then
each violation with its booking and trace) and the same as JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bookline.audit.checks import CheckResult, Policy
from bookline.audit.snapshot import Snapshot

TraceUrl = Callable[[str], str | None]
# the terminal shows this many violations per check; the JSON report has all of them
SHOWN_PER_CHECK = 25
_STYLES = {"pass": "bold green", "fail": "bold red", "skipped": "yellow"}


@dataclass
class AuditReport:
    taken_at: float
    since: float | None
    policy: Policy
    bookings: dict[str, int]  # bookings read, by status
    results: list[CheckResult]

    @property
    def violation_count(self) -> int:
        return sum(len(r.violations) for r in self.results)

    @property
    def passed(self) -> bool:
        return self.violation_count == 0


def build_report(snapshot: Snapshot, policy: Policy, results: list[CheckResult]) -> AuditReport:
    counts = Counter(b.status for b in snapshot.bookings)
    return AuditReport(snapshot.taken_at, snapshot.since, policy, dict(sorted(counts.items())), results)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_json(report: AuditReport, trace_url: TraceUrl) -> dict[str, Any]:
    return {
        "taken_at": _iso(report.taken_at),
        "since": _iso(report.since),
        "grace_s": report.policy.grace_s,
        "payment_unknown_limit_s": report.policy.payment_unknown_limit_s,
        "bookings": report.bookings,
        "passed": report.passed,
        "violation_count": report.violation_count,
        "checks": [
            {
                "check": r.check,
                "title": r.title,
                "status": r.status,
                "checked": r.checked,
                "violations": len(r.violations),
                "skipped": r.skipped,
                "notes": r.notes,
            }
            for r in report.results
        ],
        "violations": [
            {**asdict(v), "trace_url": trace_url(v.trace_id) if v.trace_id else None}
            for r in report.results
            for v in r.violations
        ],
    }


def render(console: Console, report: AuditReport, trace_url: TraceUrl) -> None:
    scope = f"since {_iso(report.since)}" if report.since is not None else "everything"
    read = ", ".join(f"{n} {status}" for status, n in report.bookings.items()) or "none"
    console.print(Text(f"Bookline audit at {_iso(report.taken_at)} ({scope}); bookings read: {read}", style="bold"))

    checks = Table(title="invariants", title_justify="left")
    checks.add_column("check", no_wrap=True)
    checks.add_column("invariant")
    checks.add_column("result", no_wrap=True)
    checks.add_column("checked", justify="right")
    checks.add_column("violations", justify="right")
    for r in report.results:
        checks.add_row(
            r.check, r.title, Text(r.status.upper(), style=_STYLES[r.status]), str(r.checked), str(len(r.violations))
        )
    console.print(checks)
    for r in report.results:
        # below the table, whole: a reason names a URL or a setting to act on
        for note in ([f"skipped: {r.skipped}"] if r.skipped else []) + r.notes:
            console.print(Text(f"  {r.check}: {note}", style="yellow" if r.skipped else ""), soft_wrap=True)

    if not report.passed:
        console.print(Text(f"{report.violation_count} violation(s):", style="bold red"))
        for r in report.results:
            for v in r.violations[:SHOWN_PER_CHECK]:
                line = Text("✗ ", style="red") + Text(r.check, style="bold")
                if v.booking_id:
                    line += Text(f"  booking {v.booking_id}")
                elif v.reservation_id:
                    line += Text(f"  reservation {v.reservation_id}")
                if v.service:
                    line += Text(f"  {v.service}")
                if v.trace_id:
                    line += Text(f"  trace {trace_url(v.trace_id) or v.trace_id}", style="cyan")
                # one line per violation, never folded: ids and links stay whole to copy or grep
                console.print(line, soft_wrap=True)
                console.print(Text(f"    {v.message}"), soft_wrap=True)
            hidden = len(r.violations) - SHOWN_PER_CHECK
            if hidden > 0:
                console.print(Text(f"  ... and {hidden} more {r.check} (--json FILE lists all)"), soft_wrap=True)
        console.print(Text(f"✗ {report.violation_count} violation(s)", style="bold red"))
    else:
        skipped = [r.title for r in report.results if r.status == "skipped"]
        suffix = f" ({len(skipped)} check(s) skipped)" if skipped else ""
        console.print(Text(f"✓ no violation{suffix}", style="bold green"))
