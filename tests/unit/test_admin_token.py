"""The admin token of ``bookline up``: the setting wins; otherwise DATA_DIR/admin.token, created once
(owner-only) and handed to every service it starts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bookline.admin_token import ensure_admin_token, resolve_admin_token
from bookline.config import Settings
from bookline.runner import service_children


def test_without_a_setting_or_a_file_there_is_no_token(tmp_path: Path) -> None:
    assert resolve_admin_token(Settings(data_dir=tmp_path)) is None


def test_bookline_up_creates_the_token_file_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")

    first = ensure_admin_token(settings)
    again = ensure_admin_token(settings)

    assert first == again and len(first) >= 40
    assert stat.S_IMODE(os.stat(settings.admin_token_path).st_mode) == 0o600
    assert resolve_admin_token(settings) == first
    assert [p.name for p in settings.admin_token_path.parent.iterdir()] == ["admin.token"]  # no temporary left


def test_the_setting_wins_over_the_file_and_no_file_is_written(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, admin_token="from-the-environment")

    assert ensure_admin_token(settings) == "from-the-environment"
    assert not settings.admin_token_path.exists()


def test_an_empty_token_file_is_replaced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    settings.admin_token_path.write_text("\n")

    token = ensure_admin_token(settings)

    assert token and settings.admin_token_path.read_text().strip() == token


def test_every_child_of_bookline_up_gets_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOOKLINE_ADMIN_TOKEN", raising=False)
    settings = Settings(data_dir=tmp_path / "data")

    children = service_children(settings)

    token = settings.admin_token_path.read_text().strip()
    assert children and all(c.env and c.env["BOOKLINE_ADMIN_TOKEN"] == token for c in children)


def test_the_token_never_shows_in_the_settings_repr(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, admin_token="do-not-print-me")

    assert "do-not-print-me" not in repr(settings) and "do-not-print-me" not in str(settings.model_dump())
