"""The demo tests' fixtures: one Chromium per module, one real server of the shipped
checkpoints for every test that only uses it (none stops it or changes its models or settings;
each ``visit`` clears the POSTs it recorded), a ready tab per test, and the screenshots' folder.

Every ``expect`` waits up to ``EXPECT_TIMEOUT_MS`` instead of Playwright's 5 s: many wait on a
model's answer (the photo model takes over a second on a 360×240 image on one thread), which a
busy machine can make several times slower."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.app.demo.site import Site, Visit, launch_browser, ready_visit, serve

EXPECT_TIMEOUT_MS = 30_000

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module, not per run: while Playwright's sync API is started it keeps an asyncio loop
    running in this thread, and every later test's ``asyncio.run`` would fail."""
    yield from launch_browser()


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    yield from serve()


@pytest.fixture
def visit(browser: Any, site: Site) -> Iterator[Visit]:
    yield from ready_visit(browser, site)


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' screenshots go: ``AESERVE_SCREENSHOT_DIR`` when set (docs/screenshots/
    holds the committed ones), else a temporary folder."""
    folder = os.environ.get("AESERVE_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
