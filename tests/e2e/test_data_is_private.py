"""Everything ``bookline up`` keeps is its owner's alone: the data directory 0700, every file in it
(databases and their WAL, the queue, the mail, the keys, the tokens) 0600, with no step for the user;
and ``bookline token`` prints a token the stack accepts."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from support.booking import Client
from support.up import bookline_up, up_env, wait_for


def test_bookline_up_keeps_its_data_dir_0700_and_every_file_0600(tmp_path: Path):
    data_dir = tmp_path / "var"
    with bookline_up(data_dir) as up:
        client = Client.for_stack(up)
        booked = client.book(client.body())
        assert booked.status_code == 201, booked.text
        wait_for(lambda: list((data_dir / "mail").glob("*.eml")), what="the confirmation e-mail")
        time.sleep(0.5)
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [data_dir, *data_dir.rglob("*")]}
    kinds = {p.suffix for p in modes if p.is_file()}
    assert {".db", ".eml", ".pem", ".token"} <= kinds, kinds
    assert all(mode & 0o077 == 0 for mode in modes.values()), {str(p): oct(m) for p, m in modes.items() if m & 0o077}
    assert modes[data_dir] == 0o700


def test_a_token_printed_by_bookline_token_books_on_the_stack(tmp_path: Path):
    data_dir = tmp_path / "var"
    with bookline_up(data_dir) as up:
        printed = subprocess.run(
            [sys.executable, "-m", "bookline", "token", "--user", "guest-42", "--ttl", "15m", "--data-dir", str(data_dir)],
            capture_output=True, text=True, check=True, env=up_env({}),
        ).stdout.strip()  # fmt: skip
        client = Client.for_stack(up)
        response = httpx.post(
            f"{client.booking_url}/bookings",
            json=client.body(),
            headers={"Authorization": f"Bearer {printed}", "Idempotency-Key": str(uuid.uuid4())},
            timeout=30,
        )
        mine = client.http.get(f"{client.booking_url}/bookings", headers={"Authorization": f"Bearer {printed}"})
    assert response.status_code == 201, response.text
    assert [b["booking_id"] for b in mine.json()["bookings"]] == [response.json()["booking_id"]]
