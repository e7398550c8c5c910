"""HEAD wherever GET is (app/head.py): GET's status and headers, no body; other paths unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router
from starlette.types import Message

from app.head import HeadAsGetMiddleware
from tests.app.helpers import assert_error

GET_PATHS = ["/healthz", "/readyz", "/metrics", "/v1/models", "/v1/models/mnist-vae", "/",
             "/openapi.json", "/docs"]


@pytest.mark.parametrize("path", GET_PATHS)
def test_head_answers_as_get_without_the_body(client: TestClient, path: str) -> None:
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    if path != "/metrics":  # the metrics move between the two requests
        assert head.headers["content-length"] == got.headers["content-length"]


def test_head_keeps_gets_errors(client: TestClient) -> None:
    response = client.head("/v1/models/no-such-model")
    assert response.status_code == 404 and response.content == b""
    assert response.headers["content-type"] == "application/json"


def test_head_where_there_is_no_get_is_405_naming_the_methods(client: TestClient) -> None:
    response = client.head("/v1/models/mnist-dae/denoise")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert client.head("/no/such/path").status_code == 404


def test_a_405_on_a_get_route_allows_head_too(client: TestClient) -> None:
    for path in ("/healthz", "/v1/models"):
        error = assert_error(client.put(path), 405, "method_not_allowed")
        assert error["message"] == f"PUT is not allowed on {path}"
        assert client.put(path).headers["allow"] == "GET, HEAD"


def test_head_operations_stay_out_of_the_api_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p, ops in paths.items() if "head" in ops]
    assert "get" in paths["/healthz"] and "get" in paths["/v1/models"]


def test_the_middleware_sends_no_body_and_hands_back_the_route() -> None:
    # at the ASGI level: TestClient and uvicorn both drop a HEAD body themselves
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.path_params['who']}")

    routes = [Route("/hi/{who}", endpoint, methods=["GET"])]
    app = HeadAsGetMiddleware(Router(routes), routes)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "method": "HEAD", "path": "/hi/you",
                             "root_path": "", "query_string": b"", "headers": []}
    asyncio.run(app(scope, receive, send))
    start, *bodies = sent
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert dict(start["headers"])[b"content-length"] == str(len("hello you")).encode()
    assert bodies == [{"type": "http.response.body", "body": b"", "more_body": False}]
    assert scope["method"] == "HEAD" and scope["path_params"] == {"who": "you"}
    assert scope["route"] is routes[0]
