"""The model list and each model's card; unknown models and routes in the error shape."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.app.helpers import assert_error


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
    assert (card["any_size"], card["takes_sigma"]) == (False, False)
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
