"""``bookline demo`` books a stay on a running stack, and says so clearly when none is running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.stack import free_ports


def demo(booking_url: str, gateway_url: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bookline", "demo", "--booking-url", booking_url, "--gateway-url", gateway_url,
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_demo_books_a_stay_on_a_running_stack(stack):
    result = demo(stack.url("booking-service"), stack.url("payment-gateway"), stack.settings.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "confirmed" in result.stdout
    assert "BKL-" in result.stdout


def test_demo_without_a_stack_explains_what_to_do(stack):
    port_a, port_b = free_ports(2)
    result = demo(f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}", stack.settings.data_dir)
    assert result.returncode == 1
    assert "bookline up" in result.stdout + result.stderr
