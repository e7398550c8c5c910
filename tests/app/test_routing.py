"""RawRequestRoute: the endpoint gets the Request directly; anything else FastAPI would inject is refused."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.testclient import TestClient

from app.routing import raw_post


async def echo_query(request: Request) -> dict[str, Any]:
    return {"q": request.query_params.get("q"), "body": (await request.body()).decode()}


async def plain(request: Request) -> Response:
    return Response(b"raw", media_type="text/plain", status_code=201)


async def wants_a_parameter(request: Request, q: int) -> dict[str, int]:
    return {"q": q}


def test_a_raw_route_answers_dicts_as_json_and_responses_as_they_are() -> None:
    router = APIRouter(prefix="/x", tags=["x"])
    raw_post(router, "/echo")(echo_query)
    raw_post(router, "/plain")(plain)
    app = FastAPI()
    app.include_router(router)
    client = TestClient(app)
    response = client.post("/x/echo", params={"q": "a"}, content=b"hello")
    assert (response.status_code, response.json()) == (200, {"q": "a", "body": "hello"})
    response = client.post("/x/plain")
    assert (response.status_code, response.text) == (201, "raw")
    assert client.get("/x/echo").status_code == 405
    assert "/x/echo" in app.openapi()["paths"]


def test_an_endpoint_with_other_parameters_is_refused() -> None:
    with pytest.raises(TypeError, match="takes the Request and nothing else"):
        raw_post(APIRouter(), "/p")(wants_a_parameter)
