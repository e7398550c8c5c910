"""The model list and each model's card; unknown models and routes in the error shape."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import assert_error, files, image_bytes


def test_models_list_names_every_checkpoint_folder(client: TestClient) -> None:
    models = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["mnist-dae", "mnist-vae"]
    assert {m["name"]: m["kind"] for m in models} == {"mnist-dae": "dae", "mnist-vae": "vae"}


def test_models_list_gives_the_limits_as_set(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_pixels=5000, max_body_bytes=4096, max_images=3, max_work=0.25)
    limits = client.get("/v1/models").json()["limits"]
    assert limits == {"max_pixels": 5000, "max_side": 65535, "max_upload_bytes": 4096,
                      "max_images": 3, "max_work_pixels": 250_000}
    listed = client.get("/openapi.json").json()["components"]["schemas"]["Limits"]["properties"]
    assert "AESERVE_MAX_WORK" in listed["max_work_pixels"]["description"]


def test_the_work_per_pixel_tells_a_refused_photo_from_a_served_one(
    app_with: Callable[..., TestClient],
) -> None:
    """A megapixel image whose pixels times the model's factor are within the limit is served;
    one over the limit is refused 413 too_much_work."""
    client = app_with(max_work=1.0)
    listing = client.get("/v1/models").json()
    budget = listing["limits"]["max_work_pixels"]
    factor = {m["name"]: m["denoise_work_per_pixel"] for m in listing["models"]}["mnist-dae"]
    assert 1 < factor["gray"] <= factor["colour"] < 1.02  # decoding, plus the 28x28 rows
    url = "/v1/models/mnist-dae/denoise?resize=true"
    for side, mode, bands in ((990, "L", "gray"), (1000, "L", "gray"), (1000, "RGB", "colour")):
        fits = side * side * factor[bands] <= budget
        assert fits == (side == 990)
        answer = client.post(url, files=files(image_bytes((side, side), mode)))
        if fits:
            assert answer.status_code == 200, answer.text
        else:
            assert_error(answer, 413, "too_much_work")


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


def test_a_models_url_reaches_it_whatever_its_folder_is_called(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    # "/v1/models/digits #2" was listed as is: a client following it asked for "digits " (the
    # '#' starts a fragment), or sent a URL with a space
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "mnist-dae", root / "digits #2?")
    with TestClient(create_app(make_settings(root))) as client:
        (listed,) = client.get("/v1/models").json()["models"]
        assert listed["url"] == "/v1/models/digits%20%232%3F"
        assert client.get(listed["url"]).json()["name"] == "digits #2?"


def test_unknown_model_is_404_naming_the_known_ones(client: TestClient) -> None:
    error = assert_error(client.get("/v1/models/nope"), 404, "unknown_model")
    assert "mnist-dae" in error["message"]
    assert_error(client.post("/v1/models/nope/sample", json={"n": 1}), 404, "unknown_model")


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v2/nothing"), 404, "not_found")
    assert_error(client.get("/v1/models/mnist-vae/sample"), 405, "method_not_allowed")


def test_the_openapi_schema_documents_every_field_of_a_card(client: TestClient) -> None:
    """The card's provenance fields, and the photo card's own, are in the schema, not extras."""
    spec = client.get("/openapi.json").json()
    answer = spec["paths"]["/v1/models/{name}"]["get"]["responses"]["200"]["content"]
    schemas = spec["components"]["schemas"]
    card = schemas[answer["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in card["anyOf"]} == {"ModelCard", "PhotoCard"}
    shared = {"value_range", "likelihood", "recipe", "training", "evaluation", "dataset",
              "load_seconds", "torch_version"}
    assert shared <= set(schemas["ModelCard"]["properties"])
    assert shared | {"sigma_cap", "colour_sha256"} <= set(schemas["PhotoCard"]["properties"])
    assert "sigma_cap" not in schemas["ModelCard"]["properties"]
    latent = schemas["EncodeAnswer"]["properties"]["results"]["items"]["$ref"]
    assert set(schemas[latent.rsplit("/", 1)[-1]]["properties"]) == {"z", "mu", "sigma", "logvar"}
