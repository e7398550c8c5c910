"""Liveness, readiness (loading, ready, draining) and the Prometheus endpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import assert_error


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


def test_metrics_are_text_plain(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")


def test_probes_answer_head_without_a_body(client: TestClient) -> None:
    for path in ("/healthz", "/readyz"):
        response = client.head(path)
        assert response.status_code == 200 and response.content == b"", path
