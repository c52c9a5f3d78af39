"""``bookline audit``: read every service of a running Bookline and check its invariants.

Exit codes: 0 when no invariant is violated, 1 when one is (the report names each booking and
trace), 2 when a service cannot be read or the command is used wrongly.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from bookline.admin_token import resolve_admin_token
from bookline.audit.checks import Policy, run_checks
from bookline.audit.collect import ServiceUnreadable, collect
from bookline.audit.report import TraceUrl, build_report, render, to_json
from bookline.config import TELEMETRY_STORE, Settings

console = Console(highlight=False)
UNREADABLE = 2
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: float) -> float:
    """``--since``: unix seconds (``1767225600``), an ISO time (``2026-01-01T10:00``, UTC unless it says
    otherwise) or a duration ago (``15m``, ``2h``, ``1d``). Raises ValueError."""
    text = text.strip()
    if (match := _DURATION.fullmatch(text)) is not None:
        return now - float(match.group(1)) * _UNIT_S[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def trace_link(settings: Settings) -> TraceUrl:
    """The page of a trace: the configured viewer, else the local store's when it is in use."""
    if settings.trace_view_url:
        template = settings.trace_view_url
        return lambda trace_id: template.format(trace_id=trace_id)
    if not settings.exports_otlp and not settings.telemetry_disabled:
        store = settings.url_of(TELEMETRY_STORE.name)
        return lambda trace_id: f"{store}/traces/{trace_id}"
    return lambda _trace_id: None


def _write_json(path: Path, body: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")


def audit_command(
    since: Annotated[
        str | None,
        typer.Option(help="audit only what was created since: unix seconds, an ISO time or a duration ago (15m)"),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="the data directory of `bookline up` (its admin.token)", show_default="./var"),
    ] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="also write the report as JSON to this file")] = None,
) -> None:
    """Check every invariant of Bookline on a running stack: exit 0 if all hold, 1 on a violation."""
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    started = time.time()
    try:
        since_ts = parse_since(since, now=started) if since is not None else None
    except ValueError:
        raise typer.BadParameter(
            "use unix seconds, an ISO time (2026-01-01T10:00) or a duration ago (15m, 2h)", param_hint="--since"
        ) from None
    token = resolve_admin_token(settings)
    if token is None:
        console.print(
            "[bold red]error:[/] no admin token: set BOOKLINE_ADMIN_TOKEN, or point --data-dir at the data "
            f"directory of `bookline up` (it keeps the token in admin.token; looked in {escape(str(settings.admin_token_path))})"
        )
        raise typer.Exit(UNREADABLE)
    policy = Policy(settings.audit_grace_s, settings.audit_payment_unknown_limit_s)
    try:
        snapshot = collect(settings, token, since=since_ts)
    except ServiceUnreadable as exc:
        console.print(f"[bold red]error:[/] cannot read {escape(exc.service)}: {escape(exc.reason)}")
        if json_file is not None:
            _write_json(json_file, {"passed": False, "unreadable": {"service": exc.service, "reason": exc.reason}})
        raise typer.Exit(UNREADABLE) from None
    report = build_report(snapshot, policy, run_checks(snapshot, policy))
    link = trace_link(settings)
    render(console, report, link)
    if json_file is not None:
        _write_json(json_file, to_json(report, link))
    raise typer.Exit(0 if report.passed else 1)
