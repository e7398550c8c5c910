"""Several images in one request: the one that cannot be read is named, by place and file name."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.app.helpers import assert_error, image_bytes

URL = "/v1/models/mnist-dae/denoise"


def parts(*named: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (filename, data, "image/png")) for filename, data in named]


@pytest.mark.parametrize(("bad", "why"), [
    (b"not an image at all", "not an image this service reads"),           # refused by its header
    (image_bytes()[: len(image_bytes()) // 2], "truncated or corrupt"),    # refused when decoded
])
def test_the_unreadable_part_is_named(client: TestClient, bad: bytes, why: str) -> None:
    response = client.post(URL, headers={"Accept": "application/json"}, files=parts(
        ("first.png", image_bytes()), ("broken.png", bad), ("third.png", image_bytes(seed=1))))
    message = assert_error(response, 415, "unsupported_media_type")["message"]
    assert message.startswith("image 2 of 3 ('broken.png'): ")
    assert why in message


def test_one_image_needs_no_name(client: TestClient) -> None:
    response = client.post(URL, files=parts(("only.png", b"not an image at all")))
    message = assert_error(response, 415, "unsupported_media_type")["message"]
    assert message.startswith("the upload is not an image")
