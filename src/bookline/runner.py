"""The supervisor behind ``bookline up``: one OS process per service, in the foreground.

It checks that every port is free, starts the children, streams their output prefixed with the
service name, waits until every ``/readyz`` answers 200 and says so in one line. Ctrl-C or SIGTERM
stops every child (SIGTERM, a grace period, then SIGKILL); a child that exits on its own stops the
rest. The children are plain data (:class:`ChildSpec`), so tests supervise tiny fake programs.

What happens when a child exits is decided in one place, :meth:`Supervisor._on_child_exit`, through
a :class:`RestartPolicy`. ``bookline up`` starts a crashed service again a few times
(:class:`RestartUpTo`), so a booking-service that died mid-saga comes back and its recovery finishes
or compensates the interrupted bookings; past the limit, the exit stops everything.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import httpx
from rich.console import Console
from rich.text import Text

from bookline.admin_token import ensure_admin_token
from bookline.auth.files import private_dir
from bookline.auth.provision import provision_keys
from bookline.config import SERVICES, TELEMETRY_STORE, Settings

_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_magenta", "bright_cyan")


@dataclass(frozen=True)
class ChildSpec:
    """One supervised process: its name, its command line and the port its ``/readyz`` answers on."""

    name: str
    command: Sequence[str]
    port: int
    host: str = "127.0.0.1"
    ready_path: str = "/readyz"
    env: Mapping[str, str] | None = None  # None: the supervisor's own environment

    @property
    def url(self) -> str:
        # a wildcard bind address is not something a client can connect to
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def service_children(settings: Settings, replicas: Mapping[str, int] | None = None) -> list[ChildSpec]:
    """The children of ``bookline up``: ``python -m bookline serve NAME`` for every service (``replicas``
    processes of it, sharing its port, named ``NAME#1``, ``NAME#2`` ...), and the local telemetry store
    with every service exporting to it, unless the user chose an OTLP endpoint (then telemetry goes
    there) or turned telemetry off (then no store is started)."""
    env = dict(os.environ)
    env["BOOKLINE_DATA_DIR"] = str(private_dir(Path(settings.data_dir)).resolve())
    # every service's key pair, the local token issuer's and the store's ingest token: no step for the user
    provision_keys(settings)
    # every service answers its /admin endpoints with the same token, which `bookline audit` finds
    env["BOOKLINE_ADMIN_TOKEN"] = ensure_admin_token(settings)
    specs = list(SERVICES)
    if not settings.exports_otlp and not settings.telemetry_disabled:
        specs.insert(0, TELEMETRY_STORE)
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = settings.url_of(TELEMETRY_STORE.name)
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
        env.setdefault("BOOKLINE_TRACE_VIEW_URL", settings.url_of(TELEMETRY_STORE.name) + "/traces/{trace_id}")
    children = []
    for spec in specs:
        count = (replicas or {}).get(spec.name, 1)
        for replica in range(1, count + 1):
            children.append(
                ChildSpec(
                    name=spec.name if count == 1 else f"{spec.name}#{replica}",
                    command=[sys.executable, "-m", "bookline", "serve", spec.name],
                    port=settings.port_of(spec.name),
                    host=settings.telemetry_host if spec is TELEMETRY_STORE else settings.host,
                    # the replicas of a service bind its port together (SO_REUSEPORT) and share its
                    # connections to PostgreSQL
                    env=env if count == 1 else {**env, "BOOKLINE_REUSE_PORT": "true", **_pool_share(count)},
                )
            )
    return children


def _pool_share(replicas: int) -> dict[str, str]:
    """One replica's PostgreSQL pool: the service's default pool split between its replicas, so that
    more replicas do not open more connections than the server allows (unless the user set a size)."""
    share = {}
    for name, setting in (("BOOKLINE_DB_POOL_SIZE", "db_pool_size"), ("BOOKLINE_DB_MAX_OVERFLOW", "db_max_overflow")):
        if name not in os.environ:
            default = Settings.model_fields[setting].default
            share[name] = str(max(1, default // replicas))
    return share


class RestartPolicy(Protocol):
    """Decides whether a child that exited on its own is started again."""

    def should_restart(self, child: ChildSpec, returncode: int, restarts: int) -> bool: ...


class NeverRestart:
    def should_restart(self, child: ChildSpec, returncode: int, restarts: int) -> bool:
        return False


@dataclass
class RestartUpTo:
    """Starts a child that exited on its own again, unless it was already started again ``limit``
    times within the last ``window_s`` seconds: a crash now and then is survived however long the
    stack runs (a fault rehearsal crashes booking-service on purpose), a crash loop stops it."""

    limit: int
    window_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _restarted_at: dict[str, list[float]] = field(default_factory=dict)

    def should_restart(self, child: ChildSpec, returncode: int, restarts: int) -> bool:
        now = self.clock()
        recent = [t for t in self._restarted_at.get(child.name, []) if now - t < self.window_s]
        allowed = len(recent) < self.limit
        if allowed:
            recent.append(now)
        self._restarted_at[child.name] = recent
        return allowed


@dataclass
class _Running:
    spec: ChildSpec
    process: subprocess.Popen[bytes]
    colour: str
    ready: bool = False
    last_probe_error: str = "not probed yet"
    restarts: int = 0
    reader: threading.Thread | None = field(default=None, repr=False)


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as uvicorn does: a port in TIME_WAIT is free, only a listener makes it busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _die_with_parent(supervisor_pid: int) -> None:
    """Runs in the child between fork and exec: its own process group, killed if we die.

    PR_SET_PDEATHSIG makes the kernel SIGKILL the child when the supervisor dies, even by SIGKILL,
    where no clean-up code of ours can run. Best effort: Linux only.
    """
    os.setpgid(0, 0)
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # the supervisor may have died before prctl took effect
        if os.getppid() != supervisor_pid:
            os.kill(os.getpid(), signal.SIGKILL)


_PR_SET_PDEATHSIG = 1
try:  # resolved here, not in the forked child, where loading a library is unsafe
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _PRCTL = None


class Supervisor:
    """Runs a set of children in the foreground until a signal, a failure or a readiness timeout."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        console: Console | None = None,
        ready_timeout: float = 60.0,
        # uvicorn's own graceful shutdown takes at most 3 s; what is left of 5 s absorbs the SIGKILL
        stop_grace: float = 3.5,
        poll_interval: float = 0.2,
        restart_policy: RestartPolicy | None = None,
    ) -> None:
        self.children = list(children)
        self.console = console or Console(highlight=False)
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.poll_interval = poll_interval
        self.restart_policy = restart_policy or NeverRestart()
        self._running: list[_Running] = []
        self._stop = threading.Event()
        self._stop_reason = ""
        self._print_lock = threading.Lock()
        self._width = max((len(c.name) for c in self.children), default=0)

    # -- public surface -------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped; 0 after a requested stop, 1 after any failure."""
        # replicas share their port: each port is asked about once
        busy = list({(c.host, c.port): c for c in self.children if _port_in_use(c.host, c.port)}.values())
        if busy:
            for c in busy:
                self._say(f"port {c.port} ({c.host}) needed by {c.name} is already in use", "bold red")
            self._say("is another Bookline running? stop it or choose other ports", "red")
            return 1
        previous = self._install_signal_handlers()
        try:
            for i, spec in enumerate(self.children):
                self._running.append(self._start(spec, _COLOURS[i % len(_COLOURS)]))
            return self._supervise()
        finally:
            self._stop_all()
            self._restore_signal_handlers(previous)

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask :meth:`run` to stop every child and return (thread- and signal-safe)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    @property
    def pids(self) -> list[int]:
        return [r.process.pid for r in self._running]

    # -- the loop -------------------------------------------------------------------------------

    def _supervise(self) -> int:
        started = time.monotonic()
        all_ready = False
        # trust_env=False: a proxy from the environment must not stand between us and localhost
        with httpx.Client(timeout=httpx.Timeout(0.5, connect=0.25), trust_env=False) as http:
            while not self._stop.is_set():
                for child in self._running:
                    code = child.process.poll()
                    if code is not None and not self._on_child_exit(child, code):
                        return 1
                if not all_ready:
                    all_ready = self._probe(http)
                    if all_ready:
                        self._announce_up(time.monotonic() - started)
                    elif time.monotonic() - started > self.ready_timeout:
                        self._report_not_ready()
                        return 1
                self._stop.wait(self.poll_interval)
        self._say(f"stopping Bookline ({self._stop_reason})", "bold")
        return 0

    def _on_child_exit(self, child: _Running, returncode: int) -> bool:
        """The one place that decides what a child's own exit means; False stops everything."""
        if self._stop.is_set():
            return True  # it may have received the same Ctrl-C; we are stopping anyway
        if self.restart_policy.should_restart(child.spec, returncode, child.restarts):
            self._say(
                f"✗ {child.spec.name} {_describe_exit(returncode)}; starting it again (restart {child.restarts + 1})",
                "bold yellow",
            )
            fresh = self._start(child.spec, child.colour)
            fresh.restarts = child.restarts + 1
            self._running[self._running.index(child)] = fresh
            return True
        self._say(f"✗ {child.spec.name} {_describe_exit(returncode)}; stopping the others", "bold red")
        return False

    def _probe(self, http: httpx.Client) -> bool:
        for child in self._running:
            if child.ready or self._stop.is_set():
                continue
            try:
                response = http.get(child.spec.url + child.spec.ready_path)
            except httpx.HTTPError as exc:
                child.last_probe_error = type(exc).__name__
                continue
            child.ready = response.status_code == 200
            child.last_probe_error = f"HTTP {response.status_code}"
        return all(c.ready for c in self._running)

    def _announce_up(self, elapsed: float) -> None:
        urls = ", ".join(f"{c.spec.name} {c.spec.url}" for c in self._running)
        self._say(f"Bookline is up: {urls} (ready in {elapsed:.1f} s; Ctrl-C to stop)", "bold green")

    def _report_not_ready(self) -> None:
        late = [c for c in self._running if not c.ready]
        names = ", ".join(f"{c.spec.name} ({c.spec.url}: {c.last_probe_error})" for c in late)
        self._say(f"✗ not ready after {self.ready_timeout:g} s: {names}; stopping", "bold red")

    # -- processes ------------------------------------------------------------------------------

    def _start(self, spec: ChildSpec, colour: str) -> _Running:
        env = dict(spec.env if spec.env is not None else os.environ)
        env["PYTHONUNBUFFERED"] = "1"  # lines reach the terminal as they are written
        process = subprocess.Popen(
            list(spec.command),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # noqa: PLW1509 - only setpgid and prctl run there, see _die_with_parent
            preexec_fn=functools.partial(_die_with_parent, os.getpid()),
        )
        child = _Running(spec, process, colour)
        assert process.stdout is not None
        child.reader = threading.Thread(target=self._pump, args=(spec.name, colour, process.stdout), daemon=True)
        child.reader.start()
        return child

    def _pump(self, name: str, colour: str, stream: IO[bytes]) -> None:
        prefix = Text(f"{name:<{self._width}} │ ", style=colour)
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            with self._print_lock:
                self.console.print(prefix + Text(line), soft_wrap=True)
        stream.close()

    def _stop_all(self) -> None:
        """SIGTERM every child's process group, wait for the grace period, SIGKILL the rest."""
        alive = [c for c in self._running if c.process.poll() is None]
        for child in alive:
            _signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        for child in alive:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"{child.spec.name} did not stop in {self.stop_grace:g} s; killing it", "yellow")
        for child in self._running:
            # also reaches grandchildren left in the group after their parent exited
            _signal_group(child.process.pid, signal.SIGKILL)
            child.process.wait()
        for child in self._running:
            if child.reader is not None:
                child.reader.join(timeout=1.0)
        if self._running:
            self._say("Bookline stopped", "bold")

    # -- signals and output ---------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}  # only the main thread may set handlers; callers use request_stop()

        def handler(signum: int, _frame: object) -> None:
            self.request_stop(signal.Signals(signum).name)

        return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, object]) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    def _say(self, message: str, style: str) -> None:
        with self._print_lock:
            self.console.print(Text(message, style=style), soft_wrap=True)


def _describe_exit(returncode: int) -> str:
    if returncode < 0:  # Popen's way of saying a signal ended the process
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (exit code {returncode})"
    return f"exited unexpectedly with code {returncode}"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own group (setpgid in _die_with_parent)
    except (ProcessLookupError, PermissionError):
        pass


def run_stack(
    settings: Settings,
    *,
    console: Console | None = None,
    ready_timeout: float = 60.0,
    replicas: Mapping[str, int] | None = None,
) -> int:
    """``bookline up``: supervise every service of Bookline with these settings (``replicas`` processes
    of each, one by default)."""
    return Supervisor(
        service_children(settings, replicas),
        console=console,
        ready_timeout=ready_timeout,
        restart_policy=RestartUpTo(settings.service_restart_limit, settings.service_restart_window_s),
    ).run()
