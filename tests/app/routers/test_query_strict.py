"""Query strings: a parameter an operation does not take, or one given twice, is a 422 naming it."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, FastAPI, Query
from fastapi.testclient import TestClient

from app.errors import install_error_handlers
from app.routers.query import STRICT_QUERY
from tests.app.helpers import assert_error, files, image_bytes

Z = [[0.0] * 32]  # one latent of the tiny mnist-vae


def test_a_misspelt_parameter_is_named_with_the_ones_the_route_takes(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-dae/denoise?sigam=25", files=files(image_bytes()))
    message = assert_error(response, 422, "invalid_request")["message"]
    assert "'sigam'" in message
    assert "resize, sigma" in message


def test_a_parameter_given_twice_is_refused_not_the_last_one_used(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-dae/denoise?resize=true&resize=false",
                           files=files(image_bytes()))
    message = assert_error(response, 422, "invalid_request")["message"]
    assert "'resize'" in message and "2 times" in message


@pytest.mark.parametrize(("url", "takes"), [
    ("/v1/models/mnist-vae/encode", "resize, sample, seed"),
    ("/v1/models/mnist-vae/score", "k, resize, seed"),
    ("/v1/models/mnist-vae/interpolate", "resize, steps"),
])
def test_every_image_operation_refuses_a_stray_parameter(client: TestClient, url: str,
                                                          takes: str) -> None:
    response = client.post(f"{url}?nonsense=1", files=files(image_bytes(), image_bytes(seed=1)))
    message = assert_error(response, 422, "invalid_request")["message"]
    assert "'nonsense'" in message and takes in message


def test_a_seed_in_the_query_of_a_json_interpolate_is_refused(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-vae/interpolate?seed=1", json={"z": Z * 2})
    assert "'seed'" in assert_error(response, 422, "invalid_request")["message"]


@pytest.mark.parametrize(("op", "body"), [("decode", {"z": Z}), ("sample", {"n": 1})])
def test_json_operations_take_no_query_parameters(client: TestClient, op: str,
                                                  body: dict[str, object]) -> None:
    response = client.post(f"/v1/models/mnist-vae/{op}?seed=1", json=body)
    message = assert_error(response, 422, "invalid_request")["message"]
    assert "'seed'" in message and "takes no query parameters" in message


def test_the_parameters_a_route_takes_still_work(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-vae/encode?sample=true&seed=3",
                           files=files(image_bytes()))
    assert response.status_code == 200, response.text
    assert response.json()["seed"] == 3
    response = client.post("/v1/models/mnist-vae/score?k=2&seed=1", files=files(image_bytes()))
    assert response.status_code == 200, response.text
    response = client.post("/v1/models/mnist-vae/interpolate?steps=3", json={"z": Z * 2})
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 3


@pytest.mark.parametrize("url", ["/v1/models?_=1700000000", "/v1/models/mnist-dae?_=1",
                                 "/healthz?x=1"])
def test_get_routes_ignore_a_cache_busting_parameter(client: TestClient, url: str) -> None:
    assert client.get(url).status_code == 200


def test_a_parameter_that_takes_a_list_may_be_repeated() -> None:
    router = APIRouter(dependencies=STRICT_QUERY)

    @router.get("/ids")
    async def ids(i: Annotated[list[int], Query()], one: int = 0) -> list[int]:
        return [*i, one]

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    with TestClient(app) as test_client:
        assert test_client.get("/ids?i=1&i=2&one=3").json() == [1, 2, 3]
        response = test_client.get("/ids?i=1&one=3&one=4")
        assert "'one'" in assert_error(response, 422, "invalid_request")["message"]
