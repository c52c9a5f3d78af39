"""Where each service's CPU goes while it books: a py-spy profile of every service under
``bench/bookings.py``, summed up by what the time was spent in.

Runs ``bench/bookings.py --modes on`` (or ``--mode``) with enough bookings to keep the stack busy,
waits until it books, records each service process with ``py-spy record --format raw`` for
``--seconds``, and prints for each service (and all of them) the share of samples by the innermost
package a sample was in: OpenTelemetry by sub-package, Bookline's telemetry modules, SQLAlchemy,
uvicorn, aiohttp and the rest. The shares of OpenTelemetry and Bookline's telemetry modules are what
tracing costs directly; garbage collection and the like show up spread over everything.

py-spy is in the ``bench`` extra: ``pip install -e '.[bench]'``. Attaching to a process needs the
ptrace permission (root, or ``kernel.yama.ptrace_scope=0``).

    python bench/profile_services.py [--mode on|stock|off|store] [--seconds 25] [--rate 150] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).with_name("bookings.py")
FRAME = re.compile(r"\((.*?):\d+\)$")
# Bookline's own telemetry modules: what tracing adds beside the SDK
TELEMETRY_MODULES = ("telemetry.py", "http_tracing.py", "http_client_tracing.py", "otlp_encoding.py", "redaction.py",
                     "adapters/db_spans.py")  # fmt: skip


def group(path: str) -> str | None:
    """What a frame's file belongs to, or None for the standard library (counted as its caller)."""
    if "/bookline/" in path and "site-packages/" not in path:
        module = path.split("bookline/", 1)[1]
        return f"bookline/{module}" if module in TELEMETRY_MODULES else "bookline (the services)"
    if "site-packages/" not in path:
        return None
    parts = path.split("site-packages/", 1)[1].split("/")
    if parts[0] == "opentelemetry":
        return "/".join(parts[:3]).removesuffix(".py")
    return parts[0]


def summarize(raw: Path) -> Counter:
    """Samples by the group of the innermost frame that has one."""
    found: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        where = "(standard library only)"
        for frame in reversed(stack.split(";")):
            match = FRAME.search(frame)
            if match and (name := group(match.group(1))) is not None:
                where = name
                break
        found[where] += int(count)
    return found


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def service_pids(bench: int) -> dict[str, int]:
    """The ``bookline serve NAME`` processes of the benchmark's ``bookline up`` (its child)."""
    found = {}
    for up in children(bench):
        for pid in children(up):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv:
                found[argv[argv.index(b"serve") + 1].decode()] = pid
    return found


def print_table(name: str, samples: Counter, top: int) -> None:
    total = sum(samples.values()) or 1
    traced = sum(v for k, v in samples.items() if k.startswith("opentelemetry") or k.removeprefix("bookline/")
                 in TELEMETRY_MODULES)  # fmt: skip
    print(f"\n{name}: {total} samples, {traced * 100 / total:.1f}% in OpenTelemetry and Bookline's telemetry modules")
    for where, count in samples.most_common(top):
        print(f"  {count * 100 / total:5.1f}%  {where}")


def main() -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed: pip install -e '.[bench]'")
    bookings = int(args.rate * (args.seconds + 40))
    bench = subprocess.Popen(
        [sys.executable, str(BENCH), "--modes", args.mode, "--rounds", "1", "--warmup", "50",
         "--bookings", str(bookings), "--properties", str(bookings // 20 + 10)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # it is interrupted once the profiles are taken
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        pids: dict[str, int] = {}
        while len(pids) < 6:
            if time.monotonic() > deadline or bench.poll() is not None:
                raise SystemExit("the benchmark's stack did not start")
            time.sleep(1)
            pids = service_pids(bench.pid)
        time.sleep(args.settle)  # the stack starts, seeds, warms up and begins to book
        with tempfile.TemporaryDirectory(prefix="bookline-profile-") as scratch:
            tmp = args.keep or scratch
            Path(tmp).mkdir(parents=True, exist_ok=True)
            recorders = {
                name: subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--nonblocking",
                        "--full-filenames",
                        "--format",
                        "raw",
                        "--rate",
                        "150",
                        "--duration",
                        str(args.seconds),
                        "--pid",
                        str(pid),
                        "--output",
                        f"{tmp}/{name}.txt",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
                for name, pid in sorted(pids.items())
            }
            everything: Counter = Counter()
            for name, recorder in recorders.items():
                recorder.wait(timeout=args.seconds + 60)
                raw = Path(tmp, f"{name}.txt")
                if not raw.exists():
                    print(f"\n{name}: no profile (py-spy could not attach)")
                    continue
                samples = summarize(raw)
                everything += samples
                print_table(name, samples, args.top)
            print_table("all services", everything, args.top * 2)
    finally:
        bench.send_signal(signal.SIGINT)  # its stacks are stopped on the way out
        bench.wait(timeout=60)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["on", "stock", "off", "store"], default="on")
    parser.add_argument("--seconds", type=int, default=25, help="how long each service is recorded")
    parser.add_argument("--settle", type=int, default=25, help="seconds between the stack's start and the recording")
    parser.add_argument("--rate", type=float, default=150, help="bookings per second to plan for (keeps it busy)")
    parser.add_argument("--top", type=int, default=8, help="lines per service")
    parser.add_argument("--keep", metavar="DIR", help="keep each service's raw py-spy profile (NAME.txt) in DIR")
    args = parser.parse_args()
    main()
