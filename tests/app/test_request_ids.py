"""Request ids: echoed or made, kept while the request runs, on every answer."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.errors import ClientDisconnected, install_error_handlers
from app.metrics import Metrics, RequestMetricsMiddleware
from app.request_ids import RequestIdMiddleware, current_request_id
from app.tracing import record_stage, stage
from app.unexpected import UnexpectedErrors

log = logging.getLogger("aeserve.tests.request_ids")


def make_app() -> FastAPI:
    """A small app with the service's middleware order: request id, [tracing], metrics,
    unexpected errors."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/models/{name}/denoise")
    async def denoise(name: str) -> dict[str, str]:
        log.info("denoising", extra={"model": name})
        with stage("decode"):
            pass
        t0 = time.perf_counter()
        with stage("queue"):
            await asyncio.sleep(0)
        record_stage("batch", t0, time.perf_counter())
        with stage("encode"):
            pass
        return {"request_id": current_request_id()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/gone")
    async def gone() -> None:
        raise ClientDisconnected()

    app.add_middleware(UnexpectedErrors)
    app.add_middleware(RequestMetricsMiddleware, metrics=Metrics())
    return app


def finish(app: FastAPI) -> FastAPI:
    app.add_middleware(RequestIdMiddleware)
    return app


def test_a_request_id_is_echoed_or_made_and_lasts_the_request() -> None:
    with TestClient(finish(make_app())) as client:
        sent = client.post("/v1/models/m/denoise", headers={"X-Request-ID": "edge-42:a/b"})
        assert sent.headers["x-request-id"] == "edge-42:a/b"
        assert sent.json() == {"request_id": "edge-42:a/b"}

        made = client.post("/v1/models/m/denoise")
        made_id = made.headers["x-request-id"]
        assert uuid.UUID(hex=made_id).version == 4 and uuid.UUID(hex=made_id).hex == made_id
        assert made.json() == {"request_id": made_id}
        assert client.post("/v1/models/m/denoise").headers["x-request-id"] != made_id

        # refused: too long, a space, a control character, empty; each gets a fresh id instead
        for bad in ("x" * 129, "two words", "tab\there", ""):
            answer = client.post("/v1/models/m/denoise", headers={"X-Request-ID": bad})
            assert answer.headers["x-request-id"] != bad
            assert len(answer.headers["x-request-id"]) == 32
        assert client.post("/x", headers={"X-Request-ID": "x" * 128}).headers["x-request-id"] == "x" * 128

        # every answer carries it, errors included, and once
        missing = client.get("/nowhere", headers={"X-Request-ID": "r-404"})
        assert missing.status_code == 404
        assert missing.headers.get_list("x-request-id") == ["r-404"]
    assert current_request_id() == "-"
