"""The routes that answer only JSON honour Accept as the image routes do: 406 ``not_acceptable``
naming application/json when Accept refuses it, JSON for anything that accepts it. The routes that
answer something else (the Prometheus text, the docs, the demo page) are left to their own types,
and the probes answer JSON whatever the Accept."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

JSON_ONLY_GETS = ["/v1/models", "/v1/models/mnist-dae"]
PROBES = ["/readyz", "/healthz"]
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize("path", JSON_ONLY_GETS)
@pytest.mark.parametrize("accept", ["image/png", "text/html", "application/json;q=0, */*"])
def test_an_accept_that_refuses_json_is_406_naming_json(
    client: TestClient, path: str, accept: str
) -> None:
    answer = client.get(path, headers={"Accept": accept})
    assert answer.status_code == 406, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == "not_acceptable" and "application/json" in error["message"]


@pytest.mark.parametrize("path", JSON_ONLY_GETS)
@pytest.mark.parametrize("accept", [None, "", "*/*", "application/*", "application/json",
                                    "application/json;q=0.5, text/html", BROWSER])
def test_an_accept_that_takes_json_gets_json(
    client: TestClient, path: str, accept: str | None
) -> None:
    headers = {} if accept is None else {"Accept": accept}
    answer = client.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize("path", JSON_ONLY_GETS)
def test_a_malformed_accept_is_400(client: TestClient, path: str) -> None:
    answer = client.get(path, headers={"Accept": "json"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request"


def test_head_refuses_as_get_does(client: TestClient) -> None:
    assert client.head("/v1/models", headers={"Accept": "image/png"}).status_code == 406


@pytest.mark.parametrize(("path", "accept", "media"), [
    ("/metrics", "application/json", "text/plain"),
    ("/openapi.json", "text/html", "application/json"),
    ("/docs", "application/json", "text/html"),
    ("/", "application/json", "text/html"),
])
def test_routes_that_answer_other_types_are_left_alone(
    client: TestClient, path: str, accept: str, media: str
) -> None:
    answer = client.get(path, headers={"Accept": accept})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(media)


def test_the_json_only_routes_document_406_and_the_accept_header(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ["/v1/models", "/v1/models/{name}"]:
        operation = paths[path]["get"]
        assert {"400", "406"} <= set(operation["responses"]), path
        assert "accept" in [p["name"].lower() for p in operation.get("parameters", [])], path


def test_the_admin_reload_refuses_before_reloading(app_with: Callable[..., TestClient]) -> None:
    admin = app_with(api_token="admin-token-0123")
    auth = {"Authorization": "Bearer admin-token-0123"}
    refused = admin.post("/v1/admin/reload", headers={**auth, "Accept": "image/png"})
    assert refused.status_code == 406 and refused.json()["error"]["code"] == "not_acceptable"
    assert admin.post("/v1/admin/reload", headers={**auth, "Accept": "*/*"}).status_code == 200


@pytest.mark.parametrize("path", PROBES)
@pytest.mark.parametrize("accept", ["image/png", "text/html", "json"])
def test_the_probes_answer_whatever_the_accept(client: TestClient, path: str, accept: str) -> None:
    """A prober reads the status code: one sending an Accept without JSON must still see 200."""
    answer = client.get(path, headers={"Accept": accept})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
