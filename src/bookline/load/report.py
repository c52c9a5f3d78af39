"""The summary of a run, as Rich tables for a person and as JSON for a program.

The JSON shape (documented in README "Load"; the chaos test reads ``operations`` and ``bookings``)::

    {"config": {...the options, cards by label...},
     "duration_s": 12.3,
     "operations": {"book": {"count": 90, "rate_per_s": 7.3,
                             "latency_ms": {"p50": .., "p95": .., "p99": .., "max": ..},
                             "outcomes": {"201": 80, "409 lock_contention": 6, "dropped": 1}}, ...},
     "dropped": 1,
     "bookings": {"confirmed": ["bk_..."], "cancelled": ["bk_..."]},
     "inventory": {"properties": 50, "hot_rooms": ["prop-00007-r003"], "hot_stay": {...}}}

``count`` counts the arrivals that were sent and finished; a dropped arrival is only in ``outcomes``
(and in ``dropped``). ``confirmed`` lists every booking this run saw confirmed, including those it
cancelled later (which are also in ``cancelled``).
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from bookline.load.engine import RunResult
from bookline.load.stats import PERCENTILES, is_ok


def to_json(result: RunResult) -> dict[str, Any]:
    return {
        "config": result.options.config_view(),
        "duration_s": round(result.duration_s, 3),
        "operations": {name: stats.summary(result.duration_s) for name, stats in result.stats.operations.items()},
        "dropped": result.stats.dropped,
        "bookings": {"confirmed": list(result.bookings.confirmed), "cancelled": list(result.bookings.cancelled)},
        "inventory": result.inventory.view(),
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def operations_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"bookline load: {report['duration_s']:.1f} s, {report['dropped']} dropped")
    table.add_column("operation")
    for heading in ("count", "per s", *(f"p{p} ms" for p in PERCENTILES), "max ms"):
        table.add_column(heading, justify="right")
    for name, op in report["operations"].items():
        latency = op["latency_ms"]
        table.add_row(
            name,
            str(op["count"]),
            f"{op['rate_per_s']:.1f}",
            *(_ms(latency[f"p{p}"]) for p in PERCENTILES),
            _ms(latency["max"]),
        )
    return table


def outcomes_table(report: dict[str, Any]) -> Table:
    table = Table(title="outcomes")
    table.add_column("operation")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for name, op in report["operations"].items():
        for outcome, count in op["outcomes"].items():
            style = "green" if is_ok(outcome) else ("yellow" if outcome[:1] == "4" else "red")
            table.add_row(name, f"[{style}]{escape(outcome)}[/]", str(count))
    return table


def bookings_line(report: dict[str, Any]) -> str:
    bookings = report["bookings"]
    hot = report["inventory"]["hot_rooms"]
    line = f"bookings confirmed: {len(bookings['confirmed'])}, cancelled: {len(bookings['cancelled'])}"
    if hot:
        stay = report["inventory"]["hot_stay"]
        line += f"; hot rooms {', '.join(hot)} on {stay['check_in']} -> {stay['check_out']}"
    return line


def rate_limited(report: dict[str, Any]) -> int:
    """How many bookings (and duplicate submits) the stack refused with 429: a run that sees them
    measured a limit of the stack, which the command points out."""
    return sum(
        count
        for name in ("book", "duplicate")
        for outcome, count in report["operations"].get(name, {}).get("outcomes", {}).items()
        if outcome.startswith("429")
    )
