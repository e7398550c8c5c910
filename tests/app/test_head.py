"""HEAD wherever GET is (app/head.py): GET's status and headers, no body; other paths unchanged."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.app.helpers import assert_error

GET_PATHS = ["/healthz", "/readyz", "/metrics", "/v1/models", "/v1/models/mnist-vae", "/",
             "/openapi.json", "/docs"]


@pytest.mark.parametrize("path", GET_PATHS)
def test_head_answers_as_get_without_the_body(client: TestClient, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/metrics":  # the metrics move between the two requests
        assert head.headers["content-length"] == got.headers["content-length"]


def test_head_keeps_gets_errors(client: TestClient) -> None:
    response = client.head("/v1/models/no-such-model")
    assert response.status_code == 404 and response.content == b""
    assert response.headers["content-type"] == "application/json"


def test_head_where_there_is_no_get_is_405_naming_the_methods(client: TestClient) -> None:
    response = client.head("/v1/models/mnist-dae/denoise")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert client.head("/no/such/path").status_code == 404


def test_a_405_on_a_get_route_allows_head_too(client: TestClient) -> None:
    for path in ("/healthz", "/v1/models"):
        error = assert_error(client.put(path), 405, "method_not_allowed")
        assert error["message"] == f"PUT is not allowed on {path}"
        assert client.put(path).headers["allow"] == "GET, HEAD"


def test_head_operations_stay_out_of_the_api_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p, ops in paths.items() if "head" in ops]
    assert "get" in paths["/healthz"] and "get" in paths["/v1/models"]
