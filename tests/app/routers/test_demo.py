"""The demo page's routes: ``/`` and every file it names under ``/static/``, nothing else from
there, and all of it open when the API needs a token. The page itself, in a browser, is
tested in tests/app/demo/."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ROOT

TOKEN = "demo-page-token-42"


def test_the_page_and_every_file_it_names_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    named = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text))
    assert {"/static/js/main.js", "/static/css/app.css", "/static/examples/still-life.png"} <= named
    for path in named:
        assert client.get(path).status_code == 200, path
    modules = re.findall(r'from "\./([a-z]+\.js)"', (ROOT / "app/static/js/main.js").read_text())
    for name in modules:
        answer = client.get(f"/static/js/{name}")
        assert answer.headers["content-type"].startswith("text/javascript"), name


@pytest.mark.parametrize("path", [
    "/static/%2e%2e/settings.py", "/static/..%2f..%2fpyproject.toml", "/static/examples/make_examples.py",
    "/static/nope.png", "/static/examples", "/static/x%00.js", "/static/" + "a" * 300 + ".js",
])
def test_nothing_else_is_served_from_static(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_the_page_is_open_when_the_api_needs_a_token(app_with: Callable[..., TestClient]) -> None:
    locked = app_with(api_token=TOKEN)
    assert locked.get("/").status_code == 200
    assert locked.get("/static/js/api.js").status_code == 200
    assert locked.get("/v1/models").status_code == 401
