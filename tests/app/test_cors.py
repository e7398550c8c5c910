"""CORS: a refused preflight answered in the error shape, naming what to change."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from tests.app.helpers import assert_error


def test_a_refused_cors_preflight_is_a_json_error(app_with: Callable[..., TestClient]) -> None:
    client = app_with(cors_origins=["https://example.org"])
    preflight = {"Access-Control-Request-Method": "POST"}
    ok = client.options("/v1/models/mnist-dae/denoise",
                        headers={**preflight, "Origin": "https://example.org"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://example.org"
    refused = client.options("/v1/models/mnist-dae/denoise",
                             headers={**preflight, "Origin": "https://evil.example",
                                      "Access-Control-Request-Headers": "X-Custom"})
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "cors_refused"
    assert "origin, headers" in error["message"] and "AESERVE_CORS_ORIGINS" in error["message"]


def test_a_refused_cors_method_names_the_methods_allowed(app_with: Callable[..., TestClient]) -> None:
    """The refusal says what to change: here the method, not the origins setting."""
    client = app_with(cors_origins=["https://example.org"])
    refused = client.options("/v1/models", headers={"Origin": "https://example.org",
                                                    "Access-Control-Request-Method": "DELETE"})
    error = assert_error(refused, 400, "cors_refused")
    assert "its method (methods allowed: GET, HEAD, POST)" in error["message"]
    assert "AESERVE_CORS_ORIGINS" not in error["message"]
