"""No byte ranges: the demo page's files and the offline docs' assets are answered whole, whatever
``Range`` asks, never with Starlette's plain-text 400 or 416."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

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
