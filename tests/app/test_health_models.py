"""Health, readiness, metrics and the model cards."""

from __future__ import annotations

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


def test_models_list_names_every_checkpoint_folder(client: TestClient) -> None:
    models = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["mnist-dae", "mnist-vae"]
    assert {m["name"]: m["kind"] for m in models} == {"mnist-dae": "dae", "mnist-vae": "vae"}


def test_model_card_has_what_a_client_needs(client: TestClient, tiny_checkpoints: Path) -> None:
    card = client.get("/v1/models/mnist-vae").json()
    assert card["kind"] == "vae"
    assert card["input_shape"] == [1, 28, 28]
    assert card["channels"] == 1
    assert card["size"] == {"height": 28, "width": 28}
    assert card["value_range"] == [0.0, 1.0]
    assert card["latent_dim"] == 32
    assert card["likelihood"] == "bernoulli"
    assert set(card["operations"]) == {"denoise", "encode", "decode", "sample", "score", "interpolate"}
    assert card["device"] == "cpu"
    config = (tiny_checkpoints / "mnist-vae" / "config.json").read_text()
    assert card["sha256"] in config and len(card["sha256"]) == 64
    assert card["recipe"]["train"]["preset"] == "mnist-vae"
    assert "command" in card["training"] and "history" not in card["training"]
    assert "metrics" in card["evaluation"]
    dae = client.get("/v1/models/mnist-dae").json()
    assert dae["kind"] == "dae" and "sample" not in dae["operations"]
    assert dae["latent_dim"] == 128


def test_unknown_model_is_404_naming_the_known_ones(client: TestClient) -> None:
    error = assert_error(client.get("/v1/models/nope"), 404, "unknown_model")
    assert "mnist-dae" in error["message"]
    assert_error(client.post("/v1/models/nope/sample", json={"n": 1}), 404, "unknown_model")


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v2/nothing"), 404, "not_found")
    assert_error(client.get("/v1/models/mnist-vae/sample"), 405, "method_not_allowed")


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


def test_the_openapi_schema_documents_every_route_under_its_router_tag(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/v1/models/{name}/denoise", "post"): "images",
        ("/v1/models/{name}/encode", "post"): "images",
        ("/v1/models/{name}/score", "post"): "images",
        ("/v1/models/{name}/decode", "post"): "latents",
        ("/v1/models/{name}/sample", "post"): "latents",
        ("/v1/models/{name}/interpolate", "post"): "latents",
        ("/v1/models", "get"): "models",
        ("/v1/models/{name}", "get"): "models",
    }
    for (path, method), tag in expected.items():
        assert paths[path][method]["tags"] == [tag], (path, method)
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)
    params = {p["name"] for p in paths["/v1/models/{name}/denoise"]["post"]["parameters"]}
    assert {"name", "resize", "sigma"} <= params
