"""No byte ranges: the demo page's files and the offline docs' assets are answered whole, whatever
``Range`` asks, never with Starlette's plain-text 400 or 416; the API's routes are left as they
are."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings

FILES = ["/static/favicon.svg", "/static-offline-docs/swagger-ui.css"]


@pytest.mark.parametrize("path", FILES)
@pytest.mark.parametrize("asked", ["bytes=0-9", "bytes=5-1", "bytes=999999999-", "bytes=abc",
                                   "items=0-9", "bytes=0-1,3-4"])
def test_a_range_is_ignored_and_the_whole_file_served(client: TestClient, path: str,
                                                      asked: str) -> None:
    whole = client.get(path)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "none"
    answer = client.get(path, headers={"Range": asked, "If-Range": whole.headers["etag"]})
    assert (answer.status_code, answer.content) == (200, whole.content)
    assert "content-range" not in answer.headers


@pytest.mark.parametrize("path", FILES)
def test_head_says_no_ranges_too(client: TestClient, path: str) -> None:
    answer = client.head(path, headers={"Range": "bytes=5-1"})
    assert answer.status_code == 200 and answer.headers["accept-ranges"] == "none"


def test_the_api_sees_the_request_as_it_came(tiny_checkpoints: Path) -> None:
    """Only the files are answered whole: a route that serves none is handed ``Range`` and
    ``If-Range`` as sent, and its answer's headers are its own."""
    app = create_app(make_settings(tiny_checkpoints))

    @app.get("/v1/headers-seen")
    async def seen(request: Request) -> dict[str, str | None]:
        return {name: request.headers.get(name) for name in ("range", "if-range")}

    asked = {"Range": "bytes=0-9", "If-Range": '"abc"'}
    answer = TestClient(app).get("/v1/headers-seen", headers=asked)  # no models needed
    assert answer.status_code == 200
    assert answer.json() == {"range": "bytes=0-9", "if-range": '"abc"'}
    assert "accept-ranges" not in answer.headers


def test_an_api_answer_ignores_range(client: TestClient) -> None:
    whole = client.get("/v1/models")
    answer = client.get("/v1/models", headers={"Range": "bytes=0-9"})
    assert (answer.status_code, answer.content) == (200, whole.content)
    assert "accept-ranges" not in answer.headers and "content-range" not in answer.headers
