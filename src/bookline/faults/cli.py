"""``bookline faults set KEY=VALUE ... | show | clear``: the fault file of a data directory.

The services re-read the file while they run, so a change takes effect on their next request
without a restart. A bad key or value exits with code 2 and leaves the file as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bookline.config import Settings
from bookline.faults.file import FaultFile
from bookline.faults.model import FaultError, Faults, describe, fault_keys

faults_app = typer.Typer(
    no_args_is_help=True,
    help="Faults you can turn on while Bookline runs (DATA_DIR/faults.yaml, re-read by every service).",
)
console = Console(highlight=False)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="where the databases, queue and mail live", show_default="./var"),
]
BAD_INPUT = 2


def _fault_file(data_dir: Path | None) -> FaultFile:
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    return FaultFile(settings.faults_path)


def _fail(message: str, code: int) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _assignments(pairs: list[str]) -> dict[str, str]:
    assignments: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise _fail(f"{pair!r} is not KEY=VALUE (e.g. gateway.decline_rate=0.2)", BAD_INPUT)
        assignments[key.strip()] = value
    return assignments


def _table(faults: Faults, path: Path) -> Table:
    table = Table(title=f"faults in {path}")
    table.add_column("fault")
    table.add_column("value", justify="right")
    table.add_column("what it does")
    for key, value in faults.active().items():
        table.add_row(key, f"{value:g}", describe(key))
    return table


def _show(faults: Faults, path: Path) -> None:
    if faults.active():
        console.print(_table(faults, path))
    else:
        console.print(f"no faults ({escape(str(path))})")


@faults_app.command("set")
def set_faults(
    assignments: Annotated[
        list[str],
        typer.Argument(
            metavar="KEY=VALUE...",
            help="e.g. gateway.decline_rate=0.2 crash.after_authorize=0.02; KEY= or KEY=none unsets one. "
            f"Keys: {', '.join(fault_keys())}",
        ),
    ],
    data_dir: DataDirOption = None,
) -> None:
    """Set or unset faults; the running services pick the change up on their next request."""
    file = _fault_file(data_dir)
    try:
        faults = file.set(_assignments(assignments))
    except FaultError as exc:
        raise _fail(str(exc), BAD_INPUT) from None
    _show(faults, file.path)


@faults_app.command("show")
def show_faults(data_dir: DataDirOption = None) -> None:
    """The faults that are set, or "no faults"."""
    file = _fault_file(data_dir)
    try:
        faults = file.read()
    except FaultError as exc:
        raise _fail(f"{file.path} is not valid: {exc}; fix it or run `bookline faults clear`", 1) from None
    _show(faults, file.path)


@faults_app.command("clear")
def clear_faults(data_dir: DataDirOption = None) -> None:
    """Turn every fault off."""
    file = _fault_file(data_dir)
    file.clear()
    console.print(f"no faults ({escape(str(file.path))})")
