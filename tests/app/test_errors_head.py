"""A HEAD answered 404 or 405 carries the headers GET's answer would, Content-Length included."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(("path", "status"), [
    ("/favicon.ico", 404),                       # no route at all
    ("/v1/models/mnist-dae/denoise", 405),       # POST only
])
def test_head_errors_have_gets_headers(client: TestClient, path: str, status: int) -> None:
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == status
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    assert head.headers["content-type"] == got.headers["content-type"]
