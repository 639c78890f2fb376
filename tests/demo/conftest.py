"""The browser demo under a real browser: headless Chromium (Debian's `chromium`) driven by
Playwright, against a real `chat serve` on the test stores.

The suite still runs on a machine without a browser: every test here is skipped, with the
reason, when the `playwright` package or the Chromium binary is missing. Playwright's own
browser download is never used; set CHAT_TEST_CHROMIUM to point at another binary.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.cluster import Instance, terminate
from tests.support import Stores

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# The closed network: no QUIC, no background fetches, no component or sync traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A short heartbeat so a closed page shows "last seen" quickly even if the close frame is lost.
HEARTBEAT_S = "1"


def find_chromium() -> str | None:
    wanted = os.environ.get("CHAT_TEST_CHROMIUM")
    if wanted:
        return wanted if os.access(wanted, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no Chromium binary (apt-get install chromium, or set CHAT_TEST_CHROMIUM): "
            "browser demo tests skipped"
        )
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    """One headless Chromium for the module; each test opens its own contexts."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    with sync_api.sync_playwright() as playwright:
        launched: Browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(
    chromium_path: str, stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instance]:
    """A real `chat serve` that serves the demo at /demo/ (started only if a browser exists)."""
    instance = Instance("demo", stores, tmp_path_factory.mktemp("demo"), heartbeat_s=HEARTBEAT_S)
    try:
        instance.start()
        yield instance
    finally:
        terminate(instance)


@pytest.fixture(scope="session")
def screenshot_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the picture of the demo is written: the README's (docs/demo.png) when
    CHAT_UPDATE_DEMO_PNG=1, otherwise a temporary file, so that a test run leaves the
    checkout as it found it."""
    if os.environ.get("CHAT_UPDATE_DEMO_PNG") == "1":
        return Path(__file__).resolve().parents[2] / "docs" / "demo.png"
    return tmp_path_factory.mktemp("demo") / "demo.png"
