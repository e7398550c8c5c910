"""Liveness, readiness and Prometheus metrics; never behind the API token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.errors import error_response
from app.registry import ServedModel

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: 200 whenever the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when every model is loaded, warm and has a live batch worker; else 503 with a reason."""
    if not getattr(request.app.state, "ready", False):
        return error_response(
            503,
            "not_ready",
            "models are not loaded yet (or the service is shutting down)",
            {"Retry-After": "1"},
        )
    models: dict[str, ServedModel] = request.app.state.models
    broken = [m.name for m in models.values() if not (m.warm and m.batcher.alive)]
    if broken:
        return error_response(
            503, "not_ready", f"model(s) not serving: {', '.join(broken)}", {"Retry-After": "5"}
        )
    return JSONResponse({"status": "ready", "models": sorted(models)})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
