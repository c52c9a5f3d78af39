"""``bookline up --replicas``: what it parses, what it refuses, and the children it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bookline.config import SERVICES, Settings
from bookline.replicas import ReplicasError, check_backend, parse_replicas
from bookline.runner import service_children

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def test_one_number_is_every_service_and_names_pick_some():
    assert parse_replicas(None) == {s.name: 1 for s in SERVICES}
    assert set(parse_replicas("2").values()) == {2}
    counts = parse_replicas("booking=3,availability-service=2")
    assert counts["booking-service"] == 3 and counts["availability-service"] == 2
    assert counts["pricing-engine"] == 1


@pytest.mark.parametrize("text", ["0", "17", "booking", "booking=x", "telemetry=2", "nobody=2", "booking=2,,"])
def test_a_value_that_cannot_be_run_is_refused(text: str):
    with pytest.raises(ReplicasError):
        parse_replicas(text)


def test_more_than_one_replica_needs_postgresql_and_nats(tmp_path: Path):
    counts = parse_replicas("2")
    with pytest.raises(ReplicasError, match="PostgreSQL.*NATS"):
        check_backend(counts, Settings(data_dir=tmp_path))
    with pytest.raises(ReplicasError, match="NATS"):
        check_backend(counts, Settings(data_dir=tmp_path, database_url=PG))
    check_backend(counts, Settings(data_dir=tmp_path, database_url=PG, queue_url="nats://127.0.0.1:4222"))
    # the queue takes NATS over TLS too, and so do replicas
    check_backend(counts, Settings(data_dir=tmp_path, database_url=PG, queue_url="tls://nats.internal:4222"))
    check_backend(parse_replicas(None), Settings(data_dir=tmp_path))  # one replica: anything goes


def test_the_replicas_of_a_service_share_its_port(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, database_url=PG, queue_url="nats://127.0.0.1:4222")
    children = service_children(settings, parse_replicas("booking=3"))
    booking = [c for c in children if c.command[-1] == "booking-service"]
    assert [c.name for c in booking] == ["booking-service#1", "booking-service#2", "booking-service#3"]
    assert {c.port for c in booking} == {settings.port_of("booking-service")}
    assert all(c.env and c.env["BOOKLINE_REUSE_PORT"] == "true" for c in booking)
    pricing = [c for c in children if c.command[-1] == "pricing-engine"]
    assert [c.name for c in pricing] == ["pricing-engine"] and "BOOKLINE_REUSE_PORT" not in (pricing[0].env or {})


def test_bookline_up_refuses_replicas_on_sqlite_with_a_clear_message(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "bookline", "up", "--replicas", "2", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs PostgreSQL" in done.stdout + done.stderr
