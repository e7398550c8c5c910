"""The API's own pages (/docs, /redoc) load nothing from outside the service."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_only_local_assets(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?["']([^"']+)["']""", html.text)
    assets = [u for pair in urls for u in pair if u]
    assert assets, html.text
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from outside the service"
        assert client.get(url).status_code == 200, url
