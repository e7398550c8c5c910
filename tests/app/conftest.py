"""Fixtures for the service tests: apps over the tiny checkpoints, and a shared real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.live import LIMITED, LiveServer, running_server


def make_settings(checkpoints: Path, **overrides: Any) -> Settings:
    return Settings(checkpoint_dir=checkpoints, torch_threads=1, **overrides)


@pytest.fixture(scope="module")
def client(tiny_checkpoints: Path) -> Iterator[TestClient]:
    """One started app (models loaded and warm) per test module, default settings."""
    with TestClient(create_app(make_settings(tiny_checkpoints))) as test_client:
        yield test_client


@pytest.fixture
def app_with(tiny_checkpoints: Path) -> Iterator[Callable[..., TestClient]]:
    """Start an app with some settings changed: ``app_with(max_n=4)``."""
    opened: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        test_client = TestClient(create_app(make_settings(tiny_checkpoints, **overrides)))
        test_client.__enter__()
        opened.append(test_client)
        return test_client

    yield start
    for test_client in opened:
        test_client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def limited_server(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server (``python -m app``) with small protocol limits (``live.LIMITED``), shared by
    the tests in any module that only send it requests: none changes its state or stops it."""
    log = tmp_path_factory.mktemp("limited") / "server.log"
    with running_server(tiny_checkpoints, log, **LIMITED) as live:
        yield live
