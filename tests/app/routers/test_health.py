"""Liveness, readiness (loading, ready, draining) and the Prometheus endpoint."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import server
from app.main import create_app
from app.server import SUPERVISOR_ENV
from tests.app.conftest import make_settings
from tests.app.helpers import assert_error, files, image_bytes


def test_healthz_is_open_and_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_lists_the_models_once_loaded(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["models"] == ["mnist-dae", "mnist-vae"]


def test_readyz_is_503_until_the_models_are_loaded(tiny_checkpoints: Path) -> None:
    app = create_app(make_settings(tiny_checkpoints))
    not_started = TestClient(app)  # no ``with``: the lifespan has not run, nothing is loaded
    assert_error(not_started.get("/readyz"), 503, "not_ready")
    assert not_started.get("/healthz").status_code == 200
    with TestClient(app) as started:
        assert started.get("/readyz").status_code == 200
    assert_error(not_started.get("/readyz"), 503, "not_ready")  # after shutdown


def test_metrics_are_prometheus_text_with_per_route_labels(client: TestClient) -> None:
    client.get("/v1/models/mnist-dae")
    client.get("/v1/models/made-up-name")
    text = client.get("/metrics").text
    assert 'aeserve_requests_total{model="mnist-dae",route="/v1/models/{name}",status="200"}' in text
    assert 'model="unknown",route="/v1/models/{name}",status="404"' in text
    assert "made-up-name" not in text
    for name in (
        "aeserve_request_duration_seconds_bucket",
        "aeserve_queue_wait_seconds",
        "aeserve_compute_seconds",
        "aeserve_batch_size",
        "aeserve_queue_depth",
        'aeserve_model_load_seconds{model="mnist-vae"}',
    ):
        assert name in text


def test_readyz_turns_503_when_the_drain_begins(app_with: Callable[..., TestClient]) -> None:
    client = app_with()
    assert client.get("/readyz").status_code == 200
    drain = client.app.state.drain  # type: ignore[attr-defined]
    client.portal.call(drain.begin)  # type: ignore[union-attr]  # what SIGTERM does
    response = client.get("/readyz")
    error = assert_error(response, 503, "not_ready")
    assert "shutting down" in error["message"] and response.headers["retry-after"] == "1"
    assert client.get("/healthz").status_code == 200  # alive until it exits
    client.portal.call(drain.cancel)  # type: ignore[union-attr]


def test_a_batch_worker_that_dies_fails_liveness_and_says_why(
    app_with: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    client = app_with()
    batcher = client.app.state.registry.models["mnist-dae"].batcher  # type: ignore[attr-defined]

    def broken(*args: object) -> int:
        raise RuntimeError("a bug in the worker")

    batcher._take = broken  # the next batch meets a bug outside any one request's error handling
    with caplog.at_level(logging.ERROR, "aeserve"):
        # two images: two rows go through the queue to the worker, not inline
        held = client.post("/v1/models/mnist-dae/denoise", files=files(image_bytes(), image_bytes()))
    assert not batcher.alive
    assert "restart" in assert_error(held, 503, "unavailable")["message"]  # not left to time out
    error = assert_error(client.get("/healthz"), 503, "not_live")
    assert "mnist-dae" in error["message"] and "restart" in error["message"]
    assert_error(client.get("/readyz"), 503, "not_ready")
    [record] = [r for r in caplog.records if "batch worker of mnist-dae stopped" in r.getMessage()]
    assert record.exc_info is not None and "a bug in the worker" in record.getMessage()


def test_metrics_are_text_plain(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")


def test_probes_answer_head_without_a_body(client: TestClient) -> None:
    for path in ("/healthz", "/readyz"):
        response = client.head(path)
        assert response.status_code == 200 and response.content == b"", path


def test_a_worker_of_several_whose_batch_worker_dies_exits_for_a_fresh_one(
    tiny_checkpoints: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(SUPERVISOR_ENV, str(os.getppid()))  # as python -m app's workers have it
    raised: list[int] = []
    monkeypatch.setattr(server.signal, "raise_signal", raised.append)  # not this test process
    with TestClient(create_app(make_settings(tiny_checkpoints, workers=2))) as client:
        batcher = client.app.state.registry.models["mnist-dae"].batcher  # type: ignore[attr-defined]

        def broken(*args: object) -> int:
            raise RuntimeError("a bug in the worker")

        batcher._take = broken
        with caplog.at_level(logging.CRITICAL, "aeserve"):
            held = client.post("/v1/models/mnist-dae/denoise", files=files(image_bytes(), image_bytes()))
        assert_error(held, 503, "unavailable")
        assert raised == [signal.SIGTERM]  # it drains and exits; the supervisor starts another
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL] == [
            "the batch worker of mnist-dae stopped: this worker exits, and the supervisor starts "
            "a fresh one"]
