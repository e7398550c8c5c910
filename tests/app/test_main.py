"""The app factory and its lifespan: the routers it mounts, the schema it publishes, its own
docs pages (served offline), the CORS it adds when asked, the collector settings it applies and
gives back."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings

ERROR_REF = "#/components/schemas/ErrorBody"


def error_schema(response: dict[str, Any]) -> str | None:
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


def test_the_openapi_schema_documents_every_route_under_its_router_tag(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/v1/models/{name}/denoise", "post"): "images",
        ("/v1/models/{name}/encode", "post"): "images",
        ("/v1/models/{name}/score", "post"): "images",
        ("/v1/models/{name}/decode", "post"): "latents",
        ("/v1/models/{name}/sample", "post"): "latents",
        ("/v1/models/{name}/interpolate", "post"): "latents",
        ("/v1/models", "get"): "models",
        ("/v1/models/{name}", "get"): "models",
    }
    for (path, method), tag in expected.items():
        assert paths[path][method]["tags"] == [tag], (path, method)
    assert {"/healthz", "/readyz", "/metrics"} <= set(paths)
    params = {p["name"] for p in paths["/v1/models/{name}/denoise"]["post"]["parameters"]}
    assert {"name", "resize", "sigma"} <= params


def v1_operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in schema["paths"].items() if path.startswith("/v1")
            for method, op in item.items()]


def test_every_v1_route_documents_its_errors_with_the_error_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert set(schema["components"]["schemas"]["ErrorBody"]["properties"]) == {"error"}
    for path, method, op in v1_operations(schema):
        errors = {int(s): r for s, r in op["responses"].items() if s.isdigit() and int(s) >= 400}
        for status, response in errors.items():
            assert error_schema(response) == ERROR_REF, (path, method, status)
    for path, method, op in v1_operations(schema):
        if "/{name}/" in path:  # the operations on a model: unknown, unfit or busy
            assert {"404", "422", "503"} <= set(op["responses"]), (path, method)
    for path in ("/v1/models/{name}/denoise", "/v1/models/{name}/score"):
        assert {"408", "413", "415"} <= set(schema["paths"][path]["post"]["responses"]), path


def test_the_bearer_scheme_is_documented_exactly_when_a_token_is_configured(
    client: TestClient, app_with: Callable[..., TestClient]
) -> None:
    open_schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in open_schema.get("components", {})
    assert all("security" not in op for _, _, op in v1_operations(open_schema))
    guarded = app_with(api_token="s3cret").get("/openapi.json").json()
    schemes = guarded["components"]["securitySchemes"]
    ((name, scheme),) = schemes.items()
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, method, op in v1_operations(guarded):
        assert op["security"] == [{name: []}], (path, method)
        assert error_schema(op["responses"]["401"]) == ERROR_REF, (path, method)
    for path in ("/healthz", "/readyz", "/metrics"):  # never behind the token
        assert "security" not in guarded["paths"][path]["get"], path


def test_metrics_are_documented_as_text_plain(client: TestClient) -> None:
    content = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == [next(k for k in content if k.startswith("text/plain"))]


def test_startup_freezes_the_startup_objects_out_of_the_collector(tiny_checkpoints: Path) -> None:
    from fastapi.testclient import TestClient


    gc.unfreeze()
    with TestClient(create_app(Settings(checkpoint_dir=tiny_checkpoints, gc_freeze=False))):
        assert gc.get_freeze_count() == 0
    with TestClient(create_app(Settings(checkpoint_dir=tiny_checkpoints))):
        assert gc.get_freeze_count() > 10_000  # torch, the models, the app
    assert gc.get_freeze_count() == 0  # shutdown hands them back


def test_startup_spaces_out_young_collections_and_shutdown_restores_them(
    tiny_checkpoints: Path,
) -> None:
    from fastapi.testclient import TestClient


    before = gc.get_threshold()
    with TestClient(create_app(Settings(checkpoint_dir=tiny_checkpoints, gc_gen0_threshold=5000))):
        assert gc.get_threshold() == (5000, *before[1:])
    assert gc.get_threshold() == before
    with TestClient(create_app(Settings(checkpoint_dir=tiny_checkpoints, gc_gen0_threshold=0))):
        assert gc.get_threshold() == before


def test_png_answers_and_their_headers_are_documented(client: TestClient) -> None:
    """A generated client sees the binary PNG and the headers that carry the seed, the steps and
    the σ; the errors' headers too."""
    paths = client.get("/openapi.json").json()["paths"]
    headers = {"denoise": "X-Noise-Sigma", "sample": "X-Seed", "interpolate": "X-Steps", "decode": None}
    for op, header in headers.items():
        answers = paths[f"/v1/models/{{name}}/{op}"]["post"]["responses"]
        png = answers["200"]["content"]["image/png"]["schema"]
        assert png == {"type": "string", "format": "binary"}, op
        assert list(answers["200"].get("headers", {})) == ([header] if header else []), op
        assert list(answers["503"]["headers"]) == ["Retry-After"], op


def test_a_trailing_slash_is_no_route_and_no_redirect(client: TestClient) -> None:
    """Not a redirect to wherever the client's Host header points."""
    for method, path in (("GET", "/v1/models/"), ("POST", "/v1/models/mnist-vae/sample/")):
        answer = client.request(method, path, headers={"Host": "elsewhere.example"},
                                follow_redirects=False)
        assert answer.status_code == 404 and "location" not in answer.headers, path
        assert answer.json()["error"]["code"] == "not_found"


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


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get("/v1/models", headers={"Origin": "https://example.org"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_origins_are_configurable(app_with: Callable[..., TestClient]) -> None:
    client = app_with(cors_origins=["https://example.org"])
    ok = client.get("/v1/models", headers={"Origin": "https://example.org"})
    assert ok.headers["access-control-allow-origin"] == "https://example.org"
    other = client.get("/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    head = client.options("/v1/models", headers={"Origin": "https://example.org",
                                                  "Access-Control-Request-Method": "HEAD"})
    assert head.status_code == 200 and "HEAD" in head.headers["access-control-allow-methods"]
