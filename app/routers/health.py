"""Liveness, readiness and Prometheus metrics; never behind the API token."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from app.deps import DrainDep, LoadedDep, MetricsDep, RegistryDep
from app.errors import ApiError, responses
from app.routers import SERVER_ERROR, operation_id

router = APIRouter(tags=["health"], responses=SERVER_ERROR,
                   generate_unique_id_function=operation_id)


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    models: list[str]


# The probes answer JSON whatever the Accept: a prober reads the status code, and one that sends
# ``Accept: text/html`` must not see a live, ready service as down.
@router.get("/healthz", response_model=Health, responses=responses(503))
async def healthz(registry: RegistryDep) -> Health:
    """Liveness: 200 whenever the process answers, unless a served model's batch worker has
    stopped (a bug, logged with its traceback): that model would never answer again, and only a
    restart brings it back. 503 ``not_live`` then."""
    dead = [m.name for m in registry.models.values() if m.warm and not m.batcher.alive]
    if dead:
        raise ApiError(503, "not_live", f"the batch worker of {', '.join(dead)} has stopped; "
                                        "the process needs a restart")
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses=responses(503))
async def readyz(registry: RegistryDep, drain: DrainDep, loaded: LoadedDep) -> Ready:
    """200 when every model is loaded, warm and has a live batch worker; 503 while loading,
    draining (SIGTERM) or when a model is not serving."""
    if drain.draining:
        raise ApiError(503, "not_ready", "shutting down: draining the requests in flight",
                       {"Retry-After": "1"})
    if not loaded:
        raise ApiError(503, "not_ready", "models are not loaded yet", {"Retry-After": "1"})
    broken = [m.name for m in registry.models.values() if not (m.warm and m.batcher.alive)]
    if broken:
        raise ApiError(503, "not_ready", f"model(s) not serving: {', '.join(broken)}",
                       {"Retry-After": "5"})
    return Ready(status="ready", models=sorted(registry.models))


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition"}},
)
async def metrics(collected: MetricsDep) -> Response:
    """Prometheus text exposition (all workers' totals when AESERVE_WORKERS > 1)."""
    return Response(collected.render(), media_type=CONTENT_TYPE_LATEST)
