"""A real headless Chromium for browser tests: Debian's ``chromium`` driven by Playwright.

Playwright never downloads a browser here (``make install`` installs Debian's package); the pip
package only brings its driver. Outside CI a missing browser or driver skips the test with the
reason; with CI=true it fails it, as the PostgreSQL tests do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def _skip_or_fail(problem: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests need Debian's chromium and the playwright package in CI: {problem}")
    pytest.skip(f"{problem} (make install sets both up)")


def chromium_path() -> str:
    """Where Debian's chromium is (BOOKLINE_TEST_CHROMIUM overrides); skips or fails without it."""
    explicit = os.environ.get("BOOKLINE_TEST_CHROMIUM")
    found = explicit if explicit and os.access(explicit, os.X_OK) else None
    for name in () if found else CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            break
    if not found:
        _skip_or_fail("no chromium executable on PATH")
    return str(found)


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser), closed afterwards."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _skip_or_fail(f"the playwright package is not installed ({exc})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()
