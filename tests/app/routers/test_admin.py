"""Model updates without downtime: reload on ``POST /v1/admin/reload`` and on SIGHUP, against a real
server under a stream of requests; a corrupt checkpoint is refused while the old one serves."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.routers import admin
from app.server import SUPERVISOR_ENV
from app.settings import Settings
from tests.app.helpers import files, image_bytes
from tests.app.live import LiveServer, running_server
from tests.app.routers.conftest import AUTH, TOKEN

DENOISE = "/v1/models/mnist-dae/denoise"




class Stream:
    """Denoise requests, one after another, until stopped: on one kept-alive connection, or each on
    a new one (``fresh``: with several workers, any worker may take each)."""

    def __init__(self, url: str, fresh: bool = False) -> None:
        self.url = url
        self.fresh = fresh
        self.statuses: Counter[int | str] = Counter()  # a status, or the error of a failed request
        self.stop = threading.Event()
        self.sent = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        png = image_bytes()
        limits = httpx.Limits(max_keepalive_connections=0 if self.fresh else None)
        with httpx.Client(headers=AUTH, base_url=self.url, timeout=60, limits=limits) as http:
            while not self.stop.is_set():
                try:
                    outcome: int | str = http.post(DENOISE, files=files(png)).status_code
                except httpx.HTTPError as exc:  # reset, refused, cut short: a failed request too
                    outcome = type(exc).__name__
                self.statuses[outcome] += 1
                self.sent.set()

    def __enter__(self) -> Stream:
        self.thread.start()
        assert self.sent.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the stream's last request never ended"


def replace_folder(root: Path, name: str, source: Path) -> None:
    """A new folder renamed into place, as a deployment does it."""
    staged, old = root / f".{name}.new", root / f".{name}.old"
    shutil.copytree(source, staged)
    shutil.rmtree(old, ignore_errors=True)  # the one set aside by an earlier update
    (root / name).rename(old)
    staged.rename(root / name)


def corrupt_copy(source: Path, to: Path) -> Path:
    """``source`` with its weights changed (the sha256 in its config.json no longer matches) and
    its config.json changed (so that a reload tries it)."""
    shutil.copytree(source, to)
    weights = to / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0xFF
    weights.write_bytes(bytes(data))
    meta = json.loads((to / "config.json").read_text())
    meta["note"] = "changed, so the reload tries it"
    (to / "config.json").write_text(json.dumps(meta))
    return to


def card(http: httpx.Client) -> dict[str, object]:
    return dict(http.get("/v1/models/mnist-dae").json())


def test_reload_swaps_a_model_under_a_stream_without_a_failed_request(
    server: LiveServer, checkpoints: Path, tmp_path: Path
) -> None:
    with httpx.Client(headers=AUTH, base_url=server.url, timeout=60) as http:
        before = card(http)
        with Stream(server.url) as stream:
            # the VAE's checkpoint under the DAE's name: other weights, other kind, same operation
            replace_folder(checkpoints, "mnist-dae", checkpoints / "mnist-vae")
            answer = http.post("/v1/admin/reload").json()
            after_reload = stream.statuses.total()
            while stream.statuses.total() < after_reload + 5:  # requests on the new model too
                stream.sent.clear()
                assert stream.sent.wait(60)
            # the old model's last request has finished: its batcher and thread are stopped
            wait_for_log(server, f"stopped the old mnist-dae (sha256 {before['sha256'][:12]}", 1)
        after = card(http)
    assert answer["loaded"] == ["mnist-dae"] and answer["refused"] == {}
    assert sorted(answer["unchanged"]) == ["mnist-vae"]
    assert after["sha256"] != before["sha256"] and after["kind"] == "vae"
    assert after["loaded_at"] >= before["loaded_at"]
    assert set(stream.statuses) == {200}, stream.statuses


def test_a_corrupt_checkpoint_is_refused_and_the_old_one_serves_on(
    server: LiveServer, checkpoints: Path, tmp_path: Path
) -> None:
    corrupt = corrupt_copy(checkpoints / "mnist-dae", tmp_path / "corrupt")
    with httpx.Client(headers=AUTH, base_url=server.url, timeout=60) as http:
        before = card(http)
        with Stream(server.url) as stream:
            replace_folder(checkpoints, "mnist-dae", corrupt)
            answer = http.post("/v1/admin/reload").json()
        assert card(http)["sha256"] == before["sha256"]
        metrics = http.get("/metrics").text
    assert "sha256 mismatch" in answer["refused"]["mnist-dae"]
    assert answer["loaded"] == []
    assert set(stream.statuses) == {200}, stream.statuses
    assert 'aeserve_model_loads_total{model="mnist-dae",result="refused"} 1.0' in metrics
    assert server.wait_for("reload refused mnist-dae"), server.output()[-3000:]  # the log, read on


def test_sighup_reloads_and_folders_come_and_go(server: LiveServer, checkpoints: Path) -> None:
    shutil.copytree(checkpoints / "mnist-dae", checkpoints / "dae-copy")
    shutil.rmtree(checkpoints / "mnist-vae")
    with httpx.Client(headers=AUTH, base_url=server.url, timeout=60) as http:
        os.kill(server.proc.pid, signal.SIGHUP)
        # the reload runs in the background, loading and warming the copy: its line once it is done
        assert server.wait_for("reload: loaded ['dae-copy']"), server.output()[-3000:]
        names = {m["name"] for m in http.get("/v1/models").json()["models"]}
        assert names == {"mnist-dae", "dae-copy"}
        assert http.post("/v1/models/dae-copy/denoise", files=files(image_bytes())).status_code == 200
        assert http.get("/v1/models/mnist-vae").status_code == 404
        # no request held it: stopped
        assert server.wait_for("stopped the old mnist-vae"), server.output()[-3000:]
    assert server.proc.poll() is None  # SIGHUP's default action would have killed it


def test_a_checkpoint_directory_gone_or_empty_is_refused_and_every_model_serves_on(
    server: LiveServer, checkpoints: Path, tmp_path: Path
) -> None:
    with httpx.Client(headers=AUTH, base_url=server.url, timeout=60) as http:
        checkpoints.rename(tmp_path / "elsewhere")
        gone = http.post("/v1/admin/reload")
        checkpoints.mkdir()  # there again, but empty
        empty = http.post("/v1/admin/reload")
        os.kill(server.proc.pid, signal.SIGHUP)
        assert server.wait_for("reload refused"), server.output()[-3000:]
        served = {m["name"] for m in http.get("/v1/models").json()["models"]}
        denoised = http.post(DENOISE, files=files(image_bytes())).status_code
        ready = http.get("/readyz").status_code
    for answer, what in ((gone, "does not exist"), (empty, "holds no model")):
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["code"] == "reload_refused" and what in error["message"]
    assert "reload refused" in server.output()
    assert served == {"mnist-dae", "mnist-vae"} and denoised == 200 and ready == 200


def log_count(server: LiveServer, line: str) -> int:
    return server.output().count(line)


def wait_for_log(server: LiveServer, line: str, count: int) -> None:
    """Until ``line`` is in the server's log ``count`` times."""
    assert server.wait_for(line, count), f"{line!r} not {count} times in the log:\n{server.output()[-3000:]}"


def test_with_two_workers_a_reload_is_all_or_nothing_and_replaces_each_worker_without_a_failed_request(
    checkpoints: Path, tmp_path: Path
) -> None:
    started, finished = "Application startup complete", "Finished server process"

    def cards(url: str) -> set[tuple[object, object]]:  # a new connection each: either worker
        with httpx.Client(headers=AUTH, base_url=url, timeout=60,
                          limits=httpx.Limits(max_keepalive_connections=0)) as http:
            return {(c["sha256"], c["kind"]) for c in (card(http) for _ in range(10))}

    with (running_server(checkpoints, tmp_path / "server.log", AESERVE_WORKERS="2",
                         AESERVE_LOG_LEVEL="info", AESERVE_API_TOKEN=TOKEN) as server,
          Stream(server.url, fresh=True) as stream):
        wait_for_log(server, started, 2)  # both workers serve
        before = cards(server.url)
        with httpx.Client(headers=AUTH, base_url=server.url, timeout=60) as http:
            # a corrupt checkpoint: refused here, and no worker is replaced (all serve the old one)
            replace_folder(checkpoints, "mnist-dae", corrupt_copy(checkpoints / "mnist-dae",
                                                                  tmp_path / "corrupt"))
            refused = http.post("/v1/admin/reload").json()
            after_refusal = cards(server.url)
            # a good one: the supervisor starts a new worker, waits until it is ready, stops an
            # old one; twice
            replace_folder(checkpoints, "mnist-dae", checkpoints / "mnist-vae")
            loaded = http.post("/v1/admin/reload").json()
        wait_for_log(server, started, 4)
        wait_for_log(server, finished, 2)
        after = cards(server.url)
    assert "sha256 mismatch" in refused["refused"]["mnist-dae"] and refused["loaded"] == []
    assert after_refusal == before and len(before) == 1
    assert loaded["loaded"] == ["mnist-dae"] and loaded["refused"] == {} and loaded["workers"] == 2
    assert len(after) == 1 and after != before and next(iter(after))[1] == "vae"
    output = server.output()
    assert log_count(server, started) == 4, "a worker was replaced on the refused reload"
    assert "was not ready in time" not in output and "startup failed" not in output
    assert set(stream.statuses) == {200}, stream.statuses


@pytest.mark.parametrize("supervised", [False, True], ids=["started-another-way", "python-m-app-worker"])
def test_with_several_workers_configured_only_a_worker_of_the_supervisor_signals_it(
    checkpoints: Path, tiny_checkpoints: Path, monkeypatch: pytest.MonkeyPatch, supervised: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    signals: list[tuple[int, int]] = []
    monkeypatch.setattr(admin.os, "kill", lambda pid, sig: signals.append((pid, sig)))
    if supervised:
        monkeypatch.setenv(SUPERVISOR_ENV, str(os.getppid()))
    else:  # AESERVE_WORKERS=2 read by a server that is one process (uvicorn --factory, say)
        monkeypatch.setenv(SUPERVISOR_ENV, str(os.getppid() + 1))
    settings = Settings(checkpoint_dir=checkpoints, workers=2, torch_threads=1, api_token=TOKEN)
    with (caplog.at_level(logging.INFO, logger="aeserve"),
          TestClient(create_app(settings), headers=AUTH) as client):
        before = client.get("/v1/models/mnist-dae").json()["sha256"]
        replace_folder(checkpoints, "mnist-dae", tiny_checkpoints / "mnist-vae")
        answer = client.post("/v1/admin/reload")
        assert answer.status_code == 200, answer.text
        assert answer.json()["loaded"] == ["mnist-dae"]
        after = client.get("/v1/models/mnist-dae").json()["sha256"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload")]
    if supervised:  # verified here, loaded by the workers the supervisor starts in turn
        assert answer.json()["workers"] == 2 and after == before
        assert signals == [(os.getppid(), signal.SIGHUP)]
        assert lines == ["reload checked, replacing 2 workers: loaded ['mnist-dae'], "
                         "unchanged ['mnist-vae'], refused -, retired -"]
    else:  # reloaded in place; nobody else is signalled
        assert answer.json()["workers"] == 1 and after != before
        assert signals == []
        assert lines == ["reload: loaded ['mnist-dae'], unchanged ['mnist-vae'], refused -, retired -"]
