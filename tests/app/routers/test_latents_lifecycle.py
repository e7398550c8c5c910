"""decode, sample and interpolate around their model: a reload while a body arrives, and where
their answers are encoded."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app import images
from app.kinds.inline import INLINE_PIXELS
from app.main import create_app
from tests.app.conftest import make_settings

VAE = "/v1/models/mnist-vae"


@pytest.mark.parametrize("route", ["decode", "sample"])
def test_a_json_body_still_arriving_during_a_reload_is_answered_by_the_model_it_came_to(
    tiny_checkpoints: Path, tmp_path: Path, route: str
) -> None:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    config = root / "mnist-vae" / "config.json"

    async def scenario() -> tuple[int, dict[str, Any], list[str]]:
        app = create_app(make_settings(root, runtime="torch"))
        async with app.router.lifespan_context(app):
            registry = app.state.registry
            old = registry.models["mnist-vae"]
            body = json.dumps({"z": [[0.0] * old.latent_dim]} if route == "decode" else {"n": 2})
            reading, arrive = asyncio.Event(), asyncio.Event()

            async def slow_body() -> AsyncIterator[bytes]:
                reading.set()  # the route has the model and waits for its body
                await arrive.wait()
                yield body.encode()

            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                answer = asyncio.create_task(http.post(
                    f"{VAE}/{route}", content=slow_body(), headers={"Content-Type": "application/json"}))
                await reading.wait()
                config.write_text(json.dumps({**json.loads(config.read_text()), "note": "changed"}))
                report = await registry.reload()
                assert registry.models["mnist-vae"] is not old
                arrive.set()
                response = await answer
                await asyncio.gather(*registry.tasks)  # the old model retires once it is answered
            return response.status_code, response.json(), report.loaded

    status, answer, loaded = asyncio.run(scenario())
    assert loaded == ["mnist-vae"]
    assert status == 200, answer
    assert len(answer["images"]) == (1 if route == "decode" else 2)


@pytest.mark.parametrize(("n", "on_loop"), [(2, True), (16, False)])
def test_answers_are_encoded_on_the_loop_or_in_a_thread_by_their_pixels(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, n: int, on_loop: bool
) -> None:
    assert (n * 28 * 28 <= INLINE_PIXELS) == on_loop
    loop = client.portal.call(threading.get_ident)  # type: ignore[union-attr]
    threads: list[int] = []
    encode_png = images.encode_png

    def recorded(*args: Any, **kwargs: Any) -> bytes:
        threads.append(threading.get_ident())
        return encode_png(*args, **kwargs)

    monkeypatch.setattr(images, "encode_png", recorded)
    for accept in ("application/json", "image/png"):
        response = client.post(f"{VAE}/sample", json={"n": n, "seed": 1}, headers={"Accept": accept})
        assert response.status_code == 200, response.text
    assert len(threads) == n + 1  # n JSON images, then one grid
    assert all((thread == loop) == on_loop for thread in threads)


def test_a_sample_is_encoded_while_its_request_still_holds_its_work(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = client.app.state.registry.models["mnist-vae"].budget  # type: ignore[attr-defined]
    held: list[int] = []
    encode_png = images.encode_png

    def recorded(*args: Any, **kwargs: Any) -> bytes:
        held.append(budget.used)
        return encode_png(*args, **kwargs)

    monkeypatch.setattr(images, "encode_png", recorded)
    assert client.post(f"{VAE}/sample", json={"n": 16, "seed": 1}).status_code == 200
    assert len(held) == 16 and min(held) > 0  # the work budget and the deadline still cover it
    assert budget.used == 0
