"""Debian's Chromium driven by Playwright, for the dashboard's browser tests.

Why: the dashboard (Jinja2 + htmx + Chart.js) only shows whether it works in a real browser:
htmx swaps and Chart.js rendering happen in JavaScript. Playwright's own browser download
cannot be used on the machines this suite runs on, so Playwright drives the Debian
``chromium`` package (``/usr/bin/chromium``, installed by ``scripts/install-test-peers``)
through ``executable_path``.

Observed with Playwright 1.65 and Debian's Chromium 156 (see
tests/integration/test_dashboard_browser.py):

- No extra flag is needed: Playwright itself passes ``--headless``, ``--no-sandbox`` (its
  ``chromium_sandbox`` defaults to off) and ``--disable-dev-shm-usage``. ``--no-sandbox`` is
  still passed explicitly as root, where Chromium's sandbox refuses to run, so root runs keep
  working should the sandbox ever be turned on.
- ``/usr/bin/chromium`` is Debian's shell wrapper around /usr/lib/chromium/chromium; it adds
  its /etc/chromium.d flags. Launch takes about 1 s, closing about 0.1 s.

Usage::

    with chromium_page(artifacts_dir("dashboard")) as page:
        page.goto(url)
        save_screenshot(page, artifacts_dir("dashboard") / "overview.png")
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, ViewportSize, sync_playwright

__all__ = ["CHROMIUM", "DEFAULT_TIMEOUT_MS", "SCREENSHOT_ROOT", "artifacts_dir",
           "chromium_page", "save_screenshot"]

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium (package ``chromium``)."""

DEFAULT_TIMEOUT_MS = 10_000
"""Upper bound for every Playwright wait (launch, navigation, selectors, functions)."""

VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
"""Fixed, so screenshots of the same page are comparable between runs."""

SCREENSHOT_ROOT = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
"""tests/artifacts/screenshots/ in the repository (ignored by git)."""


def _launch_args() -> list[str]:
    # Chromium's sandbox refuses to run as root; for other users it stays on.
    return ["--no-sandbox"] if os.geteuid() == 0 else []


def artifacts_dir(name: str) -> Path:
    """``tests/artifacts/screenshots/<name>/``, created if missing.

    ``name`` is typically ``request.node.name``; characters other than letters, digits,
    ``.``, ``_`` and ``-`` become ``_`` so parametrised test ids make valid directory names.
    """
    directory = SCREENSHOT_ROOT / re.sub(r"[^A-Za-z0-9._-]", "_", name)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def save_screenshot(page: Page, path: Path, *, full_page: bool = True) -> Path:
    """Save a PNG screenshot of ``page`` at ``path`` (parent directories created); return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page, timeout=DEFAULT_TIMEOUT_MS)
    return path


@contextlib.contextmanager
def chromium_page(artifacts: Path, *, timeout_ms: float = DEFAULT_TIMEOUT_MS) -> Iterator[Page]:
    """A fresh page in headless Debian Chromium; browser and Playwright are closed on exit.

    The page's context ignores HTTPS errors (the dashboard is served with certificates from
    the test's own CA) and has a fixed 1280x900 viewport. Every Playwright wait defaults to
    ``timeout_ms``. If the ``with`` block raises, the page is saved to
    ``artifacts/failure.png`` before it is closed, so the failure can be seen.

    Fails the test (never skips) when Chromium is not installed.
    """
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests drive Debian's Chromium; "
            "run scripts/install-test-peers to install it (package chromium)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=_launch_args(),
            timeout=timeout_ms,
        )
        try:
            context = browser.new_context(ignore_https_errors=True, viewport=VIEWPORT)
            context.set_default_timeout(timeout_ms)
            context.set_default_navigation_timeout(timeout_ms)
            try:
                page = context.new_page()
                try:
                    yield page
                except BaseException:
                    # Best effort: the page may be the reason for the failure.
                    with contextlib.suppress(Exception):
                        save_screenshot(page, artifacts / "failure.png")
                    raise
            finally:
                context.close()
        finally:
            browser.close()
