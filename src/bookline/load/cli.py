"""``bookline load``: options in, a live progress bar while it runs, a summary (and JSON) out.

Exit codes: 0 when the run completed (failed bookings are results, not errors), 1 when
booking-service cannot be used at all at the start, 2 for a bad option or when the stack's local
issuer key (which signs the simulated customers' tokens) is not found under ``--data-dir``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from bookline.auth.customers import LocalIssuer
from bookline.auth.keys import ISSUER_KEY, KeyDir, MissingKeyError
from bookline.config import Settings
from bookline.load import report
from bookline.load.customers import Mint
from bookline.load.engine import run_load
from bookline.load.inventory import InventoryError
from bookline.load.options import DEFAULT_CARDS, DEFAULT_MIX, LoadOptions, OptionError, build_options
from bookline.load.stats import RunStats

console = Console(highlight=False)


def load(
    rate: Annotated[float, typer.Option("--rate", help="arrivals per second (constant, open model)")],
    duration: Annotated[str, typer.Option("--duration", help="how long arrivals come: 30s, 2m, or seconds")],
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="requests in flight at most; an arrival beyond is dropped")
    ] = 64,
    mix: Annotated[str, typer.Option("--mix", help="share of each operation")] = DEFAULT_MIX,
    hot_rooms: Annotated[int, typer.Option("--hot-rooms", help="K rooms that a share of the bookings fights over")] = 0,
    hot_share: Annotated[
        float | None,
        typer.Option("--hot-share", help="share of bookings aimed at the hot rooms", show_default="0.5 with K>0"),
    ] = None,
    cards: Annotated[
        str,
        typer.Option(
            "--cards",
            help="test cards and their shares, by name (approve, decline, insufficient_funds, gateway_error, "
            "slow) or number",
        ),
    ] = DEFAULT_CARDS,
    json_file: Annotated[Path | None, typer.Option("--json", help="write the summary as JSON to this file")] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="booking-service base URL", show_default="from the settings")
    ] = None,
    gateway_url: Annotated[
        str | None, typer.Option("--gateway-url", help="payment-gateway base URL", show_default="from the settings")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="the same seed plans the same run")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds before a request counts as timeout")] = 30.0,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="the running stack's data directory: the key in its keys/ signs the customers' tokens",
            show_default="from the settings (./var)",
        ),
    ] = None,
) -> None:
    """Send an open-model load (constant arrival rate) of searches, bookings, cancellations and
    duplicate submits to a running Bookline, then print throughput, latency and outcomes. The bookings
    are dealt over a pool of customers (one per 20 arrivals, at most 4,000), each with a token of the
    stack's local issuer, so that the per-customer rate limit is not what the run measures."""
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    try:
        options = build_options(
            rate=rate,
            duration=duration,
            concurrency=concurrency,
            mix=mix,
            hot_rooms=hot_rooms,
            hot_share=hot_share,
            cards=cards,
            url=url or settings.url_of("booking-service"),
            gateway_url=gateway_url or settings.url_of("payment-gateway"),
            timeout_s=timeout,
            seed=seed,
        )
        if json_file is not None and not json_file.parent.is_dir():
            raise OptionError(f"--json: the directory {json_file.parent} does not exist")
    except OptionError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    issuer = _issuer(settings)

    console.print(
        f"load: {options.rate:g}/s for {options.duration_s:g} s ({options.arrivals} arrivals) "
        f"against {escape(options.url)} as {options.customers} customers, at most {options.concurrency} in flight"
    )
    try:
        result = _run_with_progress(options, issuer.mint)
    except InventoryError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None

    summary = report.to_json(result)
    console.print(report.operations_table(summary))
    console.print(report.outcomes_table(summary))
    console.print(report.bookings_line(summary))
    if limited := report.rate_limited(summary):
        console.print(
            f"[yellow]note:[/] {limited} bookings were answered 429: the stack limits POST /bookings per client "
            "address (BOOKLINE_RATE_LIMIT_BOOKINGS_PER_ADDRESS, 6000/minute by default) and per customer "
            "(..._PER_CUSTOMER); raise them on the stack to measure bookings rather than its limits"
        )
    if json_file is not None:
        json_file.write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"summary written to {escape(str(json_file))}")


def _issuer(settings: Settings) -> LocalIssuer:
    """The stack's local issuer, or exit 2 saying where its key was looked for and how to get one."""
    try:
        return LocalIssuer(settings)
    except (MissingKeyError, OSError) as exc:
        path = KeyDir(settings.key_dir).private(ISSUER_KEY)
        problem = f"cannot be read ({type(exc).__name__})" if path.exists() else "is not there"
        console.print(
            f"[bold red]error:[/] the key that signs the customers' tokens, {escape(str(path))}, {problem}: "
            "pass the running stack's --data-dir (bookline up keeps its keys in DATA_DIR/keys), or run "
            "`bookline keys --data-dir DIR` to make them"
        )
        raise typer.Exit(2) from None


def _run_with_progress(options: LoadOptions, mint: Mint):
    progress = Progress(
        TextColumn("[bold]load[/]"),
        BarColumn(),
        TextColumn("{task.completed:>5.1f}/{task.total:.0f} s"),
        TextColumn(
            "sent {task.fields[sent]}  in flight {task.fields[in_flight]}  [green]ok {task.fields[ok]}[/]  "
            "[red]errors {task.fields[errors]}[/]  dropped {task.fields[dropped]}"
        ),
        console=console,
    )
    task = progress.add_task("load", total=options.duration_s, sent=0, in_flight=0, ok=0, errors=0, dropped=0)

    def tick(stats: RunStats, elapsed: float) -> None:
        progress.update(
            task,
            completed=min(elapsed, options.duration_s),
            sent=stats.sent,
            in_flight=stats.in_flight,
            ok=stats.ok,
            errors=stats.errors,
            dropped=stats.dropped,
        )

    with progress:
        return asyncio.run(run_load(options, on_tick=tick, mint=mint))
