"""Size limits: body bytes, pixels (from the header, before decoding), images, n, k, steps."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.app.helpers import assert_error, files, image_bytes, png_claiming

URL = "/v1/models/mnist-dae/denoise"


def test_a_30000_by_30000_png_header_is_refused_before_decoding(client: TestClient) -> None:
    bomb = png_claiming(30000, 30000)
    assert len(bomb) < 2000
    error = assert_error(client.post(URL, files=files(bomb)), 413, "too_many_pixels")
    assert "30000" in error["message"] or "pixels" in error["message"]


def test_pixel_limit_is_the_setting(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_pixels=28 * 28)
    assert client.post(URL, files=files(image_bytes())).status_code == 200
    big = image_bytes(size=(29, 28))
    error = assert_error(client.post(URL, params={"resize": "true"}, files=files(big)), 413)
    assert "812" in error["message"] and "784" in error["message"]


def test_body_over_the_limit_is_413_from_content_length(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_body_bytes=4096)
    big = image_bytes(size=(28, 28), mode="RGBA") * 4
    response = client.post(URL, content=big, headers={"content-type": "image/png"})
    error = assert_error(response, 413, "payload_too_large")
    assert "4096" in error["message"]


def test_chunked_body_over_the_limit_is_413(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_body_bytes=4096)

    def chunks():  # no Content-Length: the limit is counted while the body streams in
        for _ in range(10):
            yield b"x" * 1000

    response = client.post(URL, content=chunks(), headers={"content-type": "image/png"})
    assert_error(response, 413, "payload_too_large")


def test_a_chunked_json_body_over_the_limit_is_413_not_a_parse_error(
    app_with: Callable[..., TestClient],
) -> None:
    client = app_with(max_body_bytes=4096)

    def chunks():  # FastAPI reads this body itself, and would turn the refusal into a 400
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/v1/models/mnist-vae/decode", content=chunks(),
                           headers={"content-type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_json_bodies_have_their_own_smaller_limit(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_json_bytes=2048)
    body = {"z": [[0.123456789] * 32] * 10}  # about 4 KB of JSON
    error = assert_error(client.post("/v1/models/mnist-vae/decode", json=body), 413, "payload_too_large")
    assert "AESERVE_MAX_JSON_BYTES" in error["message"]
    assert client.post("/v1/models/mnist-vae/decode", json={"z": body["z"][:2]}).status_code == 200
    for ctype in ("application/problem+json", "application/vnd.x+json", "text/plain"):
        # FastAPI parses any +json type as JSON: every body but an image upload has the JSON limit
        response = client.post("/v1/models/mnist-vae/decode", content=json.dumps(body),
                               headers={"content-type": ctype})
        assert_error(response, 413, "payload_too_large")
    big_image = image_bytes(size=(28, 28), mode="RGBA")  # over 2 KB: images keep the body limit
    assert len(big_image) > 2048
    response = client.post(URL, params={"resize": "true"}, files=files(big_image))
    assert response.status_code == 200


def test_too_many_images_is_422(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_images=2)
    response = client.post(URL, files=files(*[image_bytes(seed=i) for i in range(3)]))
    error = assert_error(response, 422, "too_many_images")
    assert "2" in error["message"]


def test_n_over_the_limit_is_422(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_n=4)
    response = client.post("/v1/models/mnist-vae/sample", json={"n": 5})
    assert "4" in assert_error(response, 422, "limit_exceeded")["message"]
    response = client.post("/v1/models/mnist-vae/decode", json={"z": [[0.0] * 32] * 5})
    assert_error(response, 422, "limit_exceeded")
    assert client.post("/v1/models/mnist-vae/sample", json={"n": 4}).status_code == 200


def test_k_over_the_limit_is_422(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_k=50, default_k=10)
    url = "/v1/models/mnist-vae/score"
    error = assert_error(client.post(url, params={"k": 51}, files=files(image_bytes())), 422)
    assert "50" in error["message"]
    assert client.post(url, files=files(image_bytes())).json()["k"] == 10


def test_invalid_query_values_are_422_in_the_error_shape(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-vae/score", params={"k": 0}, files=files(image_bytes()))
    assert "k" in assert_error(response, 422, "invalid_request")["message"]
