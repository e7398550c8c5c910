"""The real service (``python -m app``) that the client's tests send requests to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.live import LiveServer, running_server


@pytest.fixture(scope="session")
def server(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server, shared by the client's tests that only send it requests (none changes its
    state or stops it)."""
    with running_server(tiny_checkpoints, tmp_path_factory.mktemp("client") / "server.log") as live:
        yield live
