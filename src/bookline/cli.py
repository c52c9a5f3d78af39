"""The ``bookline`` command: ``up`` (the whole stack), ``serve NAME`` (one service), ``seed``, ``demo``
and ``traces`` (the local telemetry store's traces in the terminal).

Heavy modules (uvicorn, the OpenTelemetry SDK, the services) are imported inside the commands, so
``bookline --help`` stays fast and one service that does not import yet never breaks the others.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bookline.audit.cli import audit_command
from bookline.config import Settings
from bookline.faults.cli import faults_app
from bookline.load.cli import load as load_command
from bookline.traces_cli import traces_app

app = typer.Typer(
    no_args_is_help=True,
    help="Bookline: a booking system traced end to end.",
    pretty_exceptions_show_locals=False,  # locals could hold a card token or a secret
)
console = Console(highlight=False)
app.add_typer(traces_app, name="traces")
app.command("audit")(audit_command)
app.add_typer(faults_app, name="faults")
app.command("load")(load_command)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="where the databases, queue and mail live", show_default="./var"),
]

# the gateway's test card that is always approved; tokenized at the gateway, never seen by Bookline
DEMO_CARD = {"number": "4242424242424242", "exp_month": 12, "cvc": "123"}
DEMO_CITY = "Lisbon"
DEMO_USER = "demo-user"
DEMO_GUEST = {"name": "Demo Guest", "email": "demo.guest@example.com"}


@app.callback()
def _private_files() -> None:
    """Every file a command creates (databases, keys, mail) is its owner's alone (0600)."""
    os.umask(0o077)


def _parse_ttl(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``2d`` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration such as 90s, 15m, 1h or 2d") from None
    if not 1 <= seconds <= 30 * 86400:
        raise typer.BadParameter("a token lives between 1 s and 30 days")
    return seconds


@app.command()
def token(
    user: Annotated[str, typer.Option("--user", help="the customer id (the token's sub)")],
    admin: Annotated[bool, typer.Option("--admin", help="add the admin scope: read and cancel any booking")] = False,
    ttl: Annotated[str, typer.Option(help="lifetime: 90s, 15m, 1h, 2d")] = "1h",
    data_dir: DataDirOption = None,
) -> None:
    """Print a customer token of the local issuer (the key `bookline up` keeps in DATA_DIR/keys)."""
    from bookline.auth.customers import mint_customer_token
    from bookline.auth.keys import MissingKeyError

    settings = _settings(data_dir)
    try:
        print(mint_customer_token(settings, user, admin=admin, ttl_s=_parse_ttl(ttl)))
    except ValueError as exc:
        raise _fail(str(exc), code=2) from None
    except MissingKeyError as exc:
        raise _fail(str(exc)) from None


@app.command()
def keys(data_dir: DataDirOption = None) -> None:
    """Create the keys every service needs (what `bookline up` does first); existing keys are kept."""
    from bookline.auth.files import private_dir
    from bookline.auth.provision import provision_keys

    settings = _settings(data_dir)
    private_dir(settings.data_dir)
    console.print(f"keys in {provision_keys(settings).path}")


@app.command()
def migrate(data_dir: DataDirOption = None) -> None:
    """Bring every service's database to its newest revision, as a deploy job before the services; safe to run again."""
    from bookline.migrate import run_migrate

    raise typer.Exit(run_migrate(_settings(data_dir), console=console))


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


@app.command()
def up(
    data_dir: DataDirOption = None,
    ready_timeout: Annotated[float, typer.Option(help="seconds to wait for every /readyz before giving up")] = 60.0,
    replicas: Annotated[
        str | None,
        typer.Option(
            help="processes of each service, sharing its port: N for every service, or booking=3,availability=2 "
            "(more than one needs PostgreSQL and NATS)"
        ),
    ] = None,
) -> None:
    """Run every service, one process each (or --replicas), in the foreground until Ctrl-C."""
    from bookline.replicas import ReplicasError, check_backend, parse_replicas
    from bookline.runner import run_stack

    settings = _settings(data_dir)
    try:
        counts = parse_replicas(replicas)
        check_backend(counts, settings)
    except ReplicasError as exc:
        raise _fail(str(exc), code=2) from None
    raise typer.Exit(run_stack(settings, console=console, ready_timeout=ready_timeout, replicas=counts))


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="booking-service, availability-service, ... or booking, ...")],
    data_dir: DataDirOption = None,
) -> None:
    """Run one service (what ``bookline up`` starts for each)."""
    from bookline import serve as serving

    try:
        serving.serve(name, _settings(data_dir))
    except serving.UnknownServiceError as exc:
        raise _fail(str(exc), code=2) from None
    except serving.ServiceNotBuiltError as exc:
        raise _fail(str(exc)) from None


@app.command("seed")
def seed_command(
    data_dir: DataDirOption = None,
    properties: Annotated[int, typer.Option(min=1, help="number of properties")] = 50,
    rooms_per_property: Annotated[int, typer.Option(min=1, help="rooms in each property")] = 20,
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same inventory")] = 1,
) -> None:
    """Create the demo inventory (properties, rooms, rate plans); safe to run again."""
    from bookline.auth.files import private_dir
    from bookline.seed import seed_inventory

    settings = _settings(data_dir)
    private_dir(settings.data_dir)
    started = time.perf_counter()
    counts = asyncio.run(
        seed_inventory(settings, properties=properties, rooms_per_property=rooms_per_property, seed=seed)
    )
    elapsed = time.perf_counter() - started
    console.print(_counts_table(counts, title=f"seeded {settings.data_dir} in {elapsed:.2f} s"))


def _counts_table(counts: dict[str, Any], *, title: str) -> Table:
    """Totals per kind of row, plus a column per breakdown (``created``, ``already_present`` ...)."""
    breakdowns = {k: v for k, v in counts.items() if isinstance(v, dict)}
    totals = {k: v for k, v in counts.items() if k not in breakdowns}
    kinds = list(totals) + [k for b in breakdowns.values() for k in b if k not in totals]
    table = Table(title=title)
    table.add_column("what")
    table.add_column("total", justify="right")
    for name in breakdowns:
        table.add_column(name.replace("_", " "), justify="right")
    for kind in dict.fromkeys(kinds):
        table.add_row(kind, str(totals.get(kind, "")), *(str(b.get(kind, "")) for b in breakdowns.values()))
    return table


@app.command()
def demo(
    booking_url: Annotated[
        str | None, typer.Option(help="booking-service base URL", show_default="from the settings")
    ] = None,
    gateway_url: Annotated[
        str | None, typer.Option(help="payment-gateway base URL", show_default="from the settings")
    ] = None,
    customer_token: Annotated[
        str | None,
        typer.Option("--token", help="a customer token; default: one of the local issuer for demo-user"),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Book a two-night stay 30 days from today on a running stack, as customer demo-user, and show the booking."""
    from bookline.auth.customers import mint_customer_token
    from bookline.auth.keys import MissingKeyError

    settings = _settings(data_dir)
    try:
        bearer = customer_token or mint_customer_token(settings, DEMO_USER, ttl_s=600)
    except MissingKeyError as exc:
        raise _fail(f"{exc}; or pass --token") from None
    booking = (booking_url or settings.url_of("booking")).rstrip("/")
    gateway = (gateway_url or settings.url_of("gateway")).rstrip("/")
    check_in = date.today() + timedelta(days=30)
    check_out = check_in + timedelta(days=2)

    with httpx.Client(timeout=settings.http_timeout_s + 5) as http:
        card = _call(http, "POST", f"{gateway}/v1/tokens", json={**DEMO_CARD, "exp_year": date.today().year + 3})
        console.print(f"card tokenized at the gateway: card ending {card['last4']}")
        property_id, offer = _find_available_room(http, booking, check_in, check_out)
        console.print(
            f"booking {property_id}, {check_in} -> {check_out}, 2 guests: {offer['name']} ({offer['room_type']}) "
            f"at its quote {offer['quote_id']}, {offer['total_minor']} {offer['currency']} (minor units)"
        )
        body = {
            "source": "api",
            "property_id": property_id,
            "check_in": check_in.isoformat(),
            "check_out": check_out.isoformat(),
            "guests": 2,
            "room_type": offer["room_type"],
            "quote_id": offer["quote_id"],
            "guest": DEMO_GUEST,
            "payment": {"method": "card", "token": card["token"], "card_last_four": card["last4"]},
        }
        result = _call(
            http,
            "POST",
            f"{booking}/bookings",
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4()), "Authorization": f"Bearer {bearer}"},
        )

    table = Table(title="booking", show_header=False)
    for key in ("booking_id", "confirmation_code", "status", "room_id", "room_type", "trace_id"):
        table.add_row(key, str(result.get(key)))
    table.add_row("total", f"{result.get('total_minor')} {result.get('currency')} (minor units)")
    terms = result.get("cancellation") or {}
    if terms:
        table.add_row("free cancellation until", f"{terms['free_cancellation_until_local']} ({terms['time_zone']})")
    if result.get("trace_url"):
        table.add_row("trace", str(result["trace_url"]))
    console.print(table)
    console.print(f"its trace in the terminal: bookline traces show {result.get('trace_id')}")


def _find_available_room(
    http: httpx.Client, booking: str, check_in: date, check_out: date
) -> tuple[str, dict[str, Any]]:
    """The first property (of the demo city, else any) with a room for two on those nights, and its
    cheapest free room as the availability answer offers it (with its quote)."""
    candidates = _items(_call(http, "GET", f"{booking}/properties", params={"city": DEMO_CITY}))
    candidates = candidates or _items(_call(http, "GET", f"{booking}/properties"))
    if not candidates:
        raise _fail("there are no properties: run `bookline seed` first")
    for prop in candidates[:20]:
        property_id = str(prop.get("property_id") or prop.get("id"))
        free = _call(
            http,
            "GET",
            f"{booking}/availability",
            params={
                "property_id": property_id,
                "check_in": check_in.isoformat(),
                "check_out": check_out.isoformat(),
                "guests": 2,
            },
        )
        if free.get("rooms"):
            return property_id, free["rooms"][0]
    raise _fail(f"no room for two from {check_in} to {check_out} in the first {len(candidates[:20])} properties")


def _items(body: Any) -> list[dict[str, Any]]:
    """The list of a list endpoint, whether it answers a bare list or wraps it in an object."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("properties", "items", "data"):
            if isinstance(body.get(key), list):
                return body[key]
    return []


def _call(http: httpx.Client, method: str, url: str, **kwargs: Any) -> Any:
    """One request of the demo; any failure ends the demo with what went wrong and where."""
    try:
        response = http.request(method, url, **kwargs)
    except httpx.ConnectError:
        raise _fail(f"nothing answers at {url}; is the stack running? start it with `bookline up`") from None
    except httpx.HTTPError as exc:
        raise _fail(f"{method} {url} failed: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_error:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        trace_id = body.get("trace_id") if isinstance(body, dict) else None
        detail = f"{err.get('code', 'http_error')}: {err.get('message', response.reason_phrase)}"
        raise _fail(f"{method} {url} answered {response.status_code} ({detail}; trace_id={trace_id})")
    return body
