"""``Annotated`` dependencies shared by the routers. All async: no threadpool hop on hot routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.errors import ApiError
from app.kinds import ServedModel
from app.registry import Registry
from app.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def lookup(request: Request, name: str) -> ServedModel:
    """The model named in the path, or 404 naming the ones there are."""
    models = request.app.state.registry.models
    served: ServedModel | None = models.get(name)
    if served is None:
        known = ", ".join(sorted(models)) or "none loaded"
        raise ApiError(404, "unknown_model", f"no model named {name!r}; available: {known}")
    return served


async def get_model(request: Request, name: str) -> ServedModel:
    return lookup(request, name)


ModelDep = Annotated[ServedModel, Depends(get_model)]


ModelName = Annotated[str, Path(description="the model: a folder of the checkpoint directory")]


def model_for(request: Request, name: str, operation: str) -> ServedModel:
    """The named model, or 404; 422 when it lacks ``operation``."""
    served = lookup(request, name)
    if not served.supports(operation):
        raise served.unsupported(operation)
    return served
