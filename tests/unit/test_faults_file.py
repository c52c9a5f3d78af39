"""The fault file: what it accepts and refuses, how `set`/`clear` rewrite it, and how services
re-read it while they run."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import pytest
import yaml

from bookline.config import Settings
from bookline.faults import FaultError, FaultFile, Faults, fault_keys
from bookline.faults.model import parse_document

EVERYTHING = """
gateway: {decline_rate: 0.2, timeout_rate: 0.05, error_rate: 0.02, latency_ms: 50}
availability: {delay_ms: 200}
hold: {ttl_seconds: 5}
notification: {failure_rate: 0.1}
queue: {redelivery_rate: 0.1}
crash: {after_hold: 0.0, after_authorize: 0.02, after_confirm: 0.02}
"""


@pytest.fixture
def file(tmp_path: Path) -> FaultFile:
    return FaultFile(tmp_path / "faults.yaml")


def test_the_fault_file_lives_in_the_data_directory(tmp_path: Path):
    assert Settings(data_dir=tmp_path).faults_path == tmp_path / "faults.yaml"


def test_every_fault_of_the_documented_file_is_read_by_its_dotted_key():
    faults = parse_document(yaml.safe_load(EVERYTHING))
    assert faults.active() == {
        "gateway.decline_rate": 0.2,
        "gateway.timeout_rate": 0.05,
        "gateway.error_rate": 0.02,
        "gateway.latency_ms": 50,
        "availability.delay_ms": 200,
        "hold.ttl_seconds": 5,
        "notification.failure_rate": 0.1,
        "queue.redelivery_rate": 0.1,
        "crash.after_hold": 0.0,
        "crash.after_authorize": 0.02,
        "crash.after_confirm": 0.02,
    }
    assert list(faults.active()) == fault_keys()
    assert faults.crash.after_authorize == 0.02 and faults.hold.ttl_seconds == 5


@pytest.mark.parametrize("document", [None, {}, {"gateway": None}, {"gateway": {}, "crash": {}}])
def test_an_empty_file_or_empty_areas_mean_no_faults(document):
    faults = parse_document(document)
    assert faults == Faults() and faults.active() == {}
    assert faults.gateway.decline_rate is None


@pytest.mark.parametrize(
    ("document", "key", "says"),
    [
        ({"gateway": {"decline_rate": 1.5}}, "gateway.decline_rate", "less than or equal to 1"),
        ({"crash": {"after_confirm": -0.1}}, "crash.after_confirm", "greater than or equal to 0"),
        ({"availability": {"delay_ms": -5}}, "availability.delay_ms", "greater than or equal to 0"),
        ({"gateway": {"latency_ms": float("inf")}}, "gateway.latency_ms", "finite"),
        ({"hold": {"ttl_seconds": 0}}, "hold.ttl_seconds", "greater than 0"),
        ({"hold": {"ttl_seconds": 90_000}}, "hold.ttl_seconds", "less than or equal to 86400"),
        ({"queue": {"redelivery_rate": "0.1"}}, "queue.redelivery_rate", "must be a number"),
        ({"notification": {"failure_rate": True}}, "notification.failure_rate", "must be a number"),
        ({"gateway": {"decline_rate": 0.2, "typo_rate": 0.1}}, "gateway.typo_rate", "unknown fault"),
        ({"database": {"delay_ms": 5}}, "database", "unknown fault area"),
        ({"gateway": 0.2}, "gateway", "must be a mapping"),
        ({"gateway": {"decline_rate": 0.6, "error_rate": 0.5}}, "gateway", "at most 1"),
    ],
)
def test_unknown_keys_and_bad_values_are_refused_naming_the_key(document, key, says):
    with pytest.raises(FaultError) as refused:
        parse_document(document)
    assert refused.value.key == key
    assert key in str(refused.value) and says in str(refused.value)


def test_a_file_that_is_not_a_mapping_is_refused():
    with pytest.raises(FaultError, match="must be a mapping of areas"):
        parse_document(["gateway.decline_rate=0.2"])


def test_a_missing_file_means_no_faults(file: FaultFile):
    assert not file.path.exists()
    assert file.current() == Faults()
    assert file.read() == Faults()


def test_set_writes_the_values_and_unsets_with_an_empty_value_or_none(file: FaultFile):
    file.set({"gateway.decline_rate": "0.2", "crash.after_authorize": "0.02", "hold.ttl_seconds": "5"})
    assert file.read().active() == {"gateway.decline_rate": 0.2, "hold.ttl_seconds": 5.0, "crash.after_authorize": 0.02}
    assert yaml.safe_load(file.path.read_text()) == {
        "gateway": {"decline_rate": 0.2},
        "hold": {"ttl_seconds": 5.0},
        "crash": {"after_authorize": 0.02},
    }

    file.set({"gateway.decline_rate": "", "hold.ttl_seconds": "None"})
    assert file.read().active() == {"crash.after_authorize": 0.02}
    # a value set earlier stays when another is set
    file.set({"queue.redelivery_rate": "1"})
    assert file.read().active() == {"queue.redelivery_rate": 1.0, "crash.after_authorize": 0.02}


def test_clear_turns_every_fault_off(file: FaultFile):
    file.set({"gateway.error_rate": "1.0", "availability.delay_ms": "10"})
    file.clear()
    assert file.read() == Faults()
    assert file.current() == Faults()


@pytest.mark.parametrize(
    ("assignment", "key"),
    [
        ({"gateway.decline_rate": "abc"}, "gateway.decline_rate"),
        ({"gateway.decline_rate": "2"}, "gateway.decline_rate"),
        ({"gateway.decline_rate": "nan"}, "gateway.decline_rate"),
        ({"gateway.nonsense": "0.1"}, "gateway.nonsense"),
        ({"crash": "0.1"}, "crash"),
        ({"queue.redelivery_rate": "0.5", "hold.ttl_seconds": "-1"}, "hold.ttl_seconds"),
    ],
)
def test_a_bad_assignment_names_the_key_and_leaves_the_file_unchanged(file: FaultFile, assignment, key):
    file.set({"gateway.timeout_rate": "0.05"})
    before = file.path.read_bytes()
    with pytest.raises(FaultError) as refused:
        file.set(assignment)
    assert refused.value.key == key and key in str(refused.value)
    assert file.path.read_bytes() == before


def test_a_bad_assignment_does_not_create_the_file(file: FaultFile):
    with pytest.raises(FaultError):
        file.set({"gateway.decline_rate": "1.1"})
    assert not file.path.exists()


def test_set_refuses_to_build_on_a_broken_file_and_says_how_to_recover(file: FaultFile):
    file.path.write_text("gateway: {decline_rate: [")
    with pytest.raises(FaultError, match="clear it"):
        file.set({"gateway.decline_rate": "0.1"})
    assert file.path.read_text() == "gateway: {decline_rate: ["


def test_a_rewrite_replaces_the_file_whole_and_leaves_no_temporary_file(file: FaultFile):
    file.set({"gateway.decline_rate": "0.1"})
    first = os.stat(file.path)
    file.set({"gateway.decline_rate": "0.2"})
    second = os.stat(file.path)
    assert first.st_ino != second.st_ino  # a new file took the name (os.replace), not an edit in place
    assert stat.S_IMODE(second.st_mode) == 0o644
    assert [p.name for p in file.path.parent.iterdir()] == ["faults.yaml"]


def test_a_reader_never_sees_half_a_file_while_it_is_rewritten(file: FaultFile):
    file.set({"gateway.decline_rate": "0.5", "gateway.latency_ms": "12345.5", "crash.after_hold": "0.25"})
    stop, seen, broken = threading.Event(), set(), []

    def read_all_the_time() -> None:
        while not stop.is_set():
            try:
                seen.add(file.read().gateway.decline_rate)
            except FaultError as exc:
                broken.append(str(exc))

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        for i in range(300):
            file.set({"gateway.decline_rate": "0.25" if i % 2 else "0.75"})
    finally:
        stop.set()
        reader.join()
    assert not broken
    assert seen <= {0.5, 0.25, 0.75} and len(seen) > 1


def test_current_reads_the_file_again_only_when_it_changed(file: FaultFile):
    writer = FaultFile(file.path)  # `bookline faults set` in another process
    parses = []
    real_read = file._read

    def counting_read() -> Faults:
        parses.append(1)
        return real_read()

    file._read = counting_read  # type: ignore[method-assign]
    writer.set({"gateway.decline_rate": "0.1"})
    for _ in range(50):
        assert file.current().gateway.decline_rate == 0.1
    assert len(parses) == 1

    writer.set({"gateway.decline_rate": "0.2"})  # same size, at once: still seen
    assert file.current().gateway.decline_rate == 0.2
    writer.set({"gateway.decline_rate": "0.3"})
    assert file.current().gateway.decline_rate == 0.3
    assert len(parses) == 3

    file.path.unlink()
    assert file.current() == Faults()


def test_a_broken_file_keeps_the_last_good_faults_and_warns_once_per_change(
    file: FaultFile, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="bookline.faults")
    file.set({"notification.failure_rate": "0.5"})
    assert file.current().notification.failure_rate == 0.5

    file.path.write_text("notification: {failure_rate: 7}\n")
    for _ in range(5):
        assert file.current().notification.failure_rate == 0.5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "notification.failure_rate" in warnings[0].getMessage()

    file.path.write_text("notification: {failure_rate: [\n")  # another broken version
    assert file.current().notification.failure_rate == 0.5
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2

    file.clear()  # set refuses to build on a broken file; clear starts again
    file.set({"queue.redelivery_rate": "0.1"})
    assert file.current().active() == {"queue.redelivery_rate": 0.1}
