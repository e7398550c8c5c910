"""The one error shape: ``ApiError``, FastAPI's own failures and refused CORS preflights answered
as ``{"error": {"code", "message"}}``, documented by ``responses``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from app.errors import ApiError, ErrorBody, UnexpectedErrors, install_error_handlers, overloaded, responses
from app.observability import RequestIdMiddleware
from tests.app.helpers import assert_error


def small_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/refuse")
    async def refuse() -> None:
        raise ApiError(409, "conflict", "not now", {"Retry-After": "3"})

    @app.get("/count")
    async def count(n: int = Query(ge=1)) -> dict[str, int]:
        return {"n": n}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("secret internals")

    @app.get("/gone")
    async def gone() -> None:
        raise ClientDisconnect()

    @app.get("/half")
    async def half() -> StreamingResponse:
        def body() -> Iterator[bytes]:
            yield b"the first part"
            raise RuntimeError("after the answer began")

        return StreamingResponse(body())

    return app


def guarded_app() -> FastAPI:
    app = small_app()
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestIdMiddleware)  # as in app.main: outermost
    return app


def test_an_api_error_is_its_status_code_message_and_headers() -> None:
    response = TestClient(small_app()).get("/refuse")
    assert assert_error(response, 409, "conflict")["message"] == "not now"
    assert response.headers["retry-after"] == "3"


def test_validation_errors_are_422_invalid_request_naming_the_field() -> None:
    error = assert_error(TestClient(small_app()).get("/count", params={"n": 0}), 422, "invalid_request")
    assert error["message"].startswith("invalid request: query.n")


def test_unknown_routes_and_methods_use_the_shape() -> None:
    client = TestClient(small_app())
    assert "/nowhere" in assert_error(client.get("/nowhere"), 404, "not_found")["message"]
    assert_error(client.post("/count"), 405, "method_not_allowed")


def test_an_unexpected_error_is_500_without_internals_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = TestClient(small_app(), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="aeserve"):
        response = client.get("/crash")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in error["message"]
    assert any(r.exc_info for r in caplog.records if "/crash" in r.getMessage())


def test_overloaded_carries_retry_after() -> None:
    error = overloaded("busy", retry_after_s=2)
    assert (error.status, error.code, error.headers) == (503, "overloaded", {"Retry-After": "2"})


def test_responses_document_the_error_schema_per_status() -> None:
    documented = responses(404, 503)
    assert set(documented) == {404, 503}
    assert all(r["model"] is ErrorBody and r["description"] for r in documented.values())


def test_an_unexpected_error_is_answered_and_not_raised_to_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the test client raises what reaches the server: nothing does, so the server has no reason
    # to close the connection, and the client's next request on it is served
    client = TestClient(guarded_app())
    with caplog.at_level(logging.ERROR, logger="aeserve"):
        response = client.get("/crash")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in error["message"]
    assert len(response.headers.get_list("x-request-id")) == 1  # the id to cite, once
    assert any(r.exc_info for r in caplog.records if "/crash" in r.getMessage())
    assert client.get("/count", params={"n": 2}).json() == {"n": 2}


def test_a_client_gone_and_an_error_mid_answer_still_reach_the_server() -> None:
    client = TestClient(guarded_app())
    with pytest.raises(ClientDisconnect):
        client.get("/gone")  # the metrics middleware counts it as 499
    with pytest.raises(RuntimeError, match="after the answer began"):
        client.get("/half")  # the server must cut a half-sent answer


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
