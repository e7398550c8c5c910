"""With several workers, a reload that finds nothing to load or retire replaces no worker: it
answers ``"workers": 0`` and the supervisor is not signalled (each worker would load every model
again, and serving runs on fewer workers meanwhile)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.main import create_app
from app.routers import admin
from app.server import SUPERVISOR_ENV
from app.settings import Settings
from tests.app.live import running_server, stop_server
from tests.app.routers.conftest import AUTH, TOKEN
from tests.app.routers.test_admin import wait_for_log

UNCHANGED = {"loaded": [], "unchanged": ["mnist-dae", "mnist-vae"], "refused": {}, "retired": [],
             "workers": 0}



def test_a_worker_of_the_supervisor_does_not_signal_it_when_nothing_changed(
    checkpoints: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(admin.os, "kill", lambda pid, sig: signals.append((pid, sig)))
    monkeypatch.setenv(SUPERVISOR_ENV, str(os.getppid()))  # this process is a worker of serve's
    settings = Settings(checkpoint_dir=checkpoints, workers=2, torch_threads=1, api_token=SecretStr(TOKEN))
    with (caplog.at_level(logging.INFO, logger="aeserve"),
          TestClient(create_app(settings), headers=AUTH) as client):
        answer = client.post("/v1/admin/reload")
    assert answer.status_code == 200, answer.text
    assert answer.json() == UNCHANGED
    assert signals == []
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload")]
    assert lines == ["reload checked, nothing replaced: loaded -, unchanged ['mnist-dae', "
                     "'mnist-vae'], refused -, retired -"]


def test_with_two_workers_a_reload_that_changes_nothing_replaces_no_worker(
    checkpoints: Path, tmp_path: Path
) -> None:
    started = "Application startup complete"
    with running_server(checkpoints, tmp_path / "server.log", AESERVE_WORKERS="2",
                        AESERVE_LOG_LEVEL="info", AESERVE_API_TOKEN=TOKEN) as server:
        wait_for_log(server, started, 2)  # both workers serve
        with httpx.Client(headers=AUTH, base_url=server.url, timeout=60) as http:
            answer = http.post("/v1/admin/reload")
        # a SIGHUP the worker sent before answering is handled by the supervisor before this
        # SIGTERM (signals are handled in the order they came, and SIGHUP's number is lower):
        # its restart of every worker would be in the log by the time the server has exited
        assert stop_server(server) == 0, server.output()[-3000:]
    assert answer.status_code == 200, answer.text
    assert answer.json() == UNCHANGED
    output = server.output()
    assert output.count(started) == 2, "a worker was replaced on a reload that changed nothing"
    assert "reload checked, nothing replaced" in output
