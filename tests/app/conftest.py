"""Fixtures for the service tests: apps over the tiny checkpoints, and image makers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


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
