"""Fixtures of the admin (reload) tests: a copy of the tiny checkpoints the test may change, and a
real server with an API token serving that copy."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.live import LiveServer, running_server

TOKEN = "admin-test-token"  # the admin routes answer only with a token
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def checkpoints(tiny_checkpoints: Path, tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    return root


@pytest.fixture
def server(checkpoints: Path, tmp_path: Path) -> Iterator[LiveServer]:
    # info: the log says when a replaced or removed model has stopped
    with running_server(checkpoints, tmp_path / "server.log", AESERVE_LOG_LEVEL="info",
                        AESERVE_API_TOKEN=TOKEN) as live:
        yield live
