"""The demo tests' fixtures: one Chromium per module, one real server of the shipped
checkpoints for every test that only uses it (none stops it or changes its models or settings;
each ``visit`` clears the POSTs it recorded), and a ready tab per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.demo.site import Site, Visit, launch_browser, ready_visit, serve


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
