"""The model in the path, as every model route looks it up (``ModelDep``, ``ModelFor``): 404 for
an unknown name and 422 for an operation the model lacks, both before the body is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import assert_error

OPERATIONS = ("denoise", "encode", "score", "decode", "sample", "interpolate")


def test_every_model_route_is_checked_here(client: TestClient) -> None:
    paths = {p for p in client.get("/openapi.json").json()["paths"] if "{name}" in p}
    assert paths == {"/v1/models/{name}", *(f"/v1/models/{{name}}/{op}" for op in OPERATIONS)}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_unknown_model_is_404_naming_every_model_before_the_body_is_read(
    client: TestClient, operation: str
) -> None:
    # a body no route accepts: the answer is about the model, not the body
    response = client.post(f"/v1/models/cats/{operation}", content=b"\x00",
                           headers={"content-type": "application/json"})
    error = assert_error(response, 404, "unknown_model")
    assert error["message"] == "no model named 'cats'; available: mnist-dae, mnist-vae"
    assert_error(client.get("/v1/models/cats"), 404, "unknown_model")


@pytest.mark.parametrize("operation", ["sample", "score"])
def test_an_operation_the_model_lacks_is_422_naming_what_it_can_do(
    client: TestClient, operation: str
) -> None:
    can = client.get("/v1/models/mnist-dae").json()["operations"]
    assert operation not in can
    response = client.post(f"/v1/models/mnist-dae/{operation}", content=b"\x00",
                           headers={"content-type": "application/json"})
    error = assert_error(response, 422, "unsupported_operation")
    assert f"cannot {operation}" in error["message"]
    assert error["message"].endswith(f"it supports: {', '.join(can)}")


def test_before_any_model_is_loaded_the_404_says_none_is(tiny_checkpoints: Path) -> None:
    app = TestClient(create_app(make_settings(tiny_checkpoints)))  # its lifespan has not run
    error = assert_error(app.get("/v1/models/mnist-vae"), 404, "unknown_model")
    assert error["message"].endswith("available: none loaded")
