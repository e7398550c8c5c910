"""The one error shape: ``ApiError`` and FastAPI's own failures answered as
``{"error": {"code", "message"}}``, documented by ``responses`` (refused CORS preflights:
test_cors.py; the middleware for unexpected errors: test_unexpected.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from app.errors import ApiError, ErrorBody, install_error_handlers, overloaded, responses
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
