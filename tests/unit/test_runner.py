"""The supervisor behind ``bookline up``, exercised with tiny fake services (``python -c`` programs).

Signals are sent to a real supervisor process, because what matters is what the operating system
sees afterwards: no child left behind.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from bookline.config import SERVICES, Settings
from bookline.runner import ChildSpec, RestartUpTo, Supervisor, service_children

# a stand-in service: answers GET /readyz with the status it is given, prints its pid
FAKE_SERVICE = r"""
import http.server, os, signal, sys
port, status, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(status if self.path == "/readyz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
print(f"fake service pid={os.getpid()} on {port}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

SUPERVISOR_SCRIPT = """
import json, sys
from bookline.runner import ChildSpec, Supervisor
children = [ChildSpec(**c) for c in json.loads(sys.argv[1])]
sys.exit(Supervisor(children).run())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fake(name: str, *, status: int = 200, mode: str = "normal") -> ChildSpec:
    port = free_port()
    return ChildSpec(name, [sys.executable, "-c", FAKE_SERVICE, str(port), str(status), mode], port)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def captured() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, highlight=False), out


class SupervisorProcess:
    """A supervisor running as its own process, with its output collected line by line."""

    def __init__(self, children: list[ChildSpec]) -> None:
        data = json.dumps([{"name": c.name, "command": list(c.command), "port": c.port} for c in children])
        self.process = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR_SCRIPT, data],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def child_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"pid=(\d+)", self.output)]


@pytest.fixture
def supervisor_process() -> Iterator[list[SupervisorProcess]]:
    started: list[SupervisorProcess] = []
    yield started
    for sup in started:  # never leave a supervisor or its children behind, even when a test fails
        if sup.process.poll() is None:
            sup.process.kill()
            sup.process.wait()
        for pid in sup.child_pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def run_until_up(supervisor: Supervisor, out: io.StringIO) -> list[int]:
    """Run the supervisor in a thread until it says Bookline is up, then stop it; its exit code."""
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(supervisor.run()))
    runner.start()
    try:
        assert wait_until(lambda: "Bookline is up" in out.getvalue(), 15), out.getvalue()
    finally:
        supervisor.request_stop("test over")
        runner.join(10)
    return result


def test_announces_up_once_every_child_answers_readyz_and_prefixes_their_output() -> None:
    console, out = captured()
    children = [fake("alpha-service"), fake("beta-service")]
    supervisor = Supervisor(children, console=console)
    result = run_until_up(supervisor, out)

    text = out.getvalue()
    up_line = next(line for line in text.splitlines() if "Bookline is up" in line)
    for child in children:
        assert f"{child.name} {child.url}" in up_line
        assert re.search(rf"^{child.name}\s*│ fake service pid=\d+ on {child.port}$", text, re.M), text
    assert result == [0]
    assert not any(alive(pid) for pid in supervisor.pids)


@pytest.mark.parametrize(
    ("ending", "reported"),
    [
        ("raise SystemExit(3)", "crashy-service exited unexpectedly with code 3"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "crashy-service was killed by SIGKILL (exit code -9)"),
    ],
)
def test_a_child_that_exits_stops_the_others_and_the_supervisor_fails(ending: str, reported: str) -> None:
    console, out = captured()
    crashy = ChildSpec(
        "crashy-service",
        [sys.executable, "-c", f"import os, signal, time; time.sleep(0.3); {ending}"],
        free_port(),
    )
    supervisor = Supervisor([fake("steady-service"), crashy], console=console)

    code = supervisor.run()

    assert code == 1
    assert reported in out.getvalue()
    assert not any(alive(pid) for pid in supervisor.pids)


def crashes_first(name: str, marker: Path) -> ChildSpec:
    """A service that exits hard the first time it starts (a crash point) and runs normally after."""
    spec = fake(name)
    script = (
        f"import os, pathlib, runpy, sys\nmarker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n    marker.touch()\n    os._exit(70)\n"
        f"sys.argv = ['fake', *{list(spec.command[3:])!r}]\nexec({FAKE_SERVICE!r})\n"
    )
    return ChildSpec(name, [sys.executable, "-c", script], spec.port)


def test_a_crashed_child_is_started_again_and_the_stack_comes_up(tmp_path: Path) -> None:
    console, out = captured()
    supervisor = Supervisor(
        [fake("steady-service"), crashes_first("crashy-service", tmp_path / "crashed-once")],
        console=console,
        restart_policy=RestartUpTo(2),
    )
    result = run_until_up(supervisor, out)

    assert "crashy-service exited unexpectedly with code 70; starting it again (restart 1)" in out.getvalue()
    assert result == [0]
    assert not any(alive(pid) for pid in supervisor.pids)


def test_a_child_that_keeps_crashing_stops_everything_past_the_restart_limit() -> None:
    console, out = captured()
    crashy = ChildSpec("crashy-service", [sys.executable, "-c", "import os; os._exit(70)"], free_port())
    supervisor = Supervisor([fake("steady-service"), crashy], console=console, restart_policy=RestartUpTo(2))

    code = supervisor.run()

    text = out.getvalue()
    assert code == 1
    assert text.count("starting it again") == 2
    assert "crashy-service exited unexpectedly with code 70; stopping the others" in text
    assert not any(alive(pid) for pid in supervisor.pids)


def test_children_not_ready_in_time_are_named_and_everything_stops() -> None:
    console, out = captured()
    supervisor = Supervisor(
        [fake("ready-service"), fake("sulky-service", status=503)], console=console, ready_timeout=1.5
    )

    started = time.monotonic()
    code = supervisor.run()

    assert code == 1
    assert time.monotonic() - started < 8
    report = next(line for line in out.getvalue().splitlines() if "not ready after" in line)
    assert "sulky-service" in report and "HTTP 503" in report
    assert "ready-service" not in report
    assert not any(alive(pid) for pid in supervisor.pids)


def test_a_port_in_use_fails_fast_naming_the_port_and_the_service() -> None:
    console, out = captured()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        supervisor = Supervisor(
            [fake("free-service"), ChildSpec("blocked-service", [sys.executable, "-c", "pass"], port)],
            console=console,
        )
        code = supervisor.run()

    assert code == 1
    assert f"port {port} (127.0.0.1) needed by blocked-service is already in use" in out.getvalue()
    assert supervisor.pids == []  # nothing was started


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_child_within_five_seconds_even_one_that_ignores_sigterm(
    sig: signal.Signals, supervisor_process: list[SupervisorProcess]
) -> None:
    sup = SupervisorProcess([fake("polite-service"), fake("stubborn-service", mode="stubborn")])
    supervisor_process.append(sup)
    assert wait_until(lambda: "Bookline is up" in sup.output and len(sup.child_pids()) == 2, 15), sup.output
    pids = sup.child_pids()

    sent = time.monotonic()
    sup.process.send_signal(sig)
    code = sup.process.wait(timeout=10)
    took = time.monotonic() - sent

    assert took < 5, f"stopping took {took:.1f} s"
    assert code == 0
    assert not any(alive(pid) for pid in pids)
    assert "stubborn-service did not stop" in sup.output  # the SIGKILL fallback was needed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_a_supervisor_that_is_killed(
    supervisor_process: list[SupervisorProcess],
) -> None:
    sup = SupervisorProcess([fake("orphan-a-service"), fake("orphan-b-service")])
    supervisor_process.append(sup)
    assert wait_until(lambda: len(sup.child_pids()) == 2, 15), sup.output
    pids = sup.child_pids()

    sup.process.kill()  # SIGKILL: no clean-up code of the supervisor runs
    sup.process.wait()

    assert wait_until(lambda: not any(alive(pid) for pid in pids), 3)


def test_bookline_up_supervises_every_service_on_the_ports_of_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    settings = Settings(data_dir=tmp_path / "data", booking_port=9100, notification_port=9105)

    children = service_children(settings)

    assert [c.name for c in children] == [s.name for s in SERVICES]
    booking, notification = children[0], children[-1]
    assert booking.command[1:] == ["-m", "bookline", "serve", "booking-service"]
    assert (booking.port, notification.port) == (9100, 9105)
    assert booking.env is not None
    assert booking.env["BOOKLINE_DATA_DIR"] == str((tmp_path / "data").resolve())
    # the user's endpoint is left alone and no local store is started
    assert booking.env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.example:4318"


def test_bookline_up_starts_the_telemetry_store_and_points_every_service_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    settings = Settings(data_dir=tmp_path / "data", telemetry_port=9318)

    children = service_children(settings)

    assert [c.name for c in children] == ["telemetry", *(s.name for s in SERVICES)]
    store = children[0]
    assert store.command[1:] == ["-m", "bookline", "serve", "telemetry"]
    assert store.port == 9318
    assert all(c.env and c.env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:9318" for c in children)


def test_bookline_up_starts_no_telemetry_store_when_telemetry_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")

    children = service_children(Settings(data_dir=tmp_path / "data"))

    assert [c.name for c in children] == [s.name for s in SERVICES]


def test_the_restart_limit_counts_the_restarts_of_a_recent_window() -> None:
    now = [0.0]
    policy = RestartUpTo(2, window_s=10.0, clock=lambda: now[0])
    child, other = ChildSpec("booking-service", ["x"], 1), ChildSpec("pricing-engine", ["x"], 2)

    def crash_at(t: float, spec: ChildSpec = child) -> bool:
        now[0] = t
        return policy.should_restart(spec, 70, 0)

    assert crash_at(0.0) and crash_at(1.0)
    assert not crash_at(2.0), "a third crash within the window is a crash loop"
    assert crash_at(2.5, other), "each service has its own count"
    assert crash_at(11.5), "the restarts at 0 s and 1 s have left the window"
    assert crash_at(12.0) and not crash_at(12.5)
