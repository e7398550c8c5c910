"""The model in the path, as every model route looks it up (``ModelDep``, ``ModelFor``): 404 for
an unknown name and 422 for an operation the model lacks, both before the body is read."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator

from app.deps import read_json
from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import assert_error

OPERATIONS = ("denoise", "encode", "score", "decode", "sample", "interpolate")


def test_every_model_route_is_checked_here(client: TestClient) -> None:
    paths = {p for p in client.get("/openapi.json").json()["paths"] if "{name}" in p}
    assert paths == {"/v1/models/{name}", *(f"/v1/models/{{name}}/{op}" for op in OPERATIONS)}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_unknown_model_is_404_naming_every_model_before_the_body_is_read(
    client: TestClient, operation: str
) -> None:
    # a body no route accepts: the answer is about the model, not the body
    response = client.post(f"/v1/models/cats/{operation}", content=b"\x00",
                           headers={"content-type": "application/json"})
    error = assert_error(response, 404, "unknown_model")
    assert error["message"] == "no model named 'cats'; available: mnist-dae, mnist-vae"
    assert_error(client.get("/v1/models/cats"), 404, "unknown_model")


@pytest.mark.parametrize("operation", ["sample", "score"])
def test_an_operation_the_model_lacks_is_422_naming_what_it_can_do(
    client: TestClient, operation: str
) -> None:
    can = client.get("/v1/models/mnist-dae").json()["operations"]
    assert operation not in can
    response = client.post(f"/v1/models/mnist-dae/{operation}", content=b"\x00",
                           headers={"content-type": "application/json"})
    error = assert_error(response, 422, "unsupported_operation")
    assert f"cannot {operation}" in error["message"]
    assert error["message"].endswith(f"it supports: {', '.join(can)}")


def test_before_any_model_is_loaded_the_404_says_none_is(tiny_checkpoints: Path) -> None:
    app = TestClient(create_app(make_settings(tiny_checkpoints)))  # its lifespan has not run
    error = assert_error(app.get("/v1/models/mnist-vae"), 404, "unknown_model")
    assert error["message"].endswith("available: none loaded")


threads: list[int] = []


class ThreadSeen(BaseModel):
    """A body that notes the thread its validation ran on."""

    z: list[float]

    @field_validator("z")
    @classmethod
    def note_thread(cls, z: list[float]) -> list[float]:
        threads.append(threading.get_ident())
        return z


@pytest.mark.parametrize(("values", "on_the_loop"), [(4, True), (20_000, False)])
def test_a_large_json_body_is_parsed_off_the_event_loop(values: int, on_the_loop: bool) -> None:
    """A few latents parse on the loop; a body over 32 KiB in the threadpool, so a 2 MiB body does
    not hold up every other request while it parses."""
    body = json.dumps({"z": [0.123456789] * values}).encode()
    settings = make_settings(Path("."))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def read() -> tuple[int, ThreadSeen]:
        request = Request({"type": "http", "method": "POST", "path": "/", "query_string": b"",
                           "headers": [(b"content-type", b"application/json")]}, receive)
        return threading.get_ident(), await read_json(request, settings, ThreadSeen)

    threads.clear()
    loop_thread, parsed = asyncio.run(read())
    assert len(parsed.z) == values
    assert (threads == [loop_thread]) is on_the_loop and len(threads) == 1
