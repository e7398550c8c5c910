"""``Annotated`` dependencies shared by the routers. All async: no threadpool hop on hot routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from app.errors import ApiError
from app.registry import ServedModel
from app.settings import Settings


def settings_of(request: Request) -> Settings:
    """The app's settings (a plain call: hot routes skip a dependency for it)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]


def lookup_model(request: Request, name: str) -> ServedModel:
    models: dict[str, ServedModel] = request.app.state.models
    served = models.get(name)
    if served is None:
        known = ", ".join(sorted(models)) or "none loaded"
        raise ApiError(404, "unknown_model", f"no model named {name!r}; available: {known}")
    return served


async def get_model(request: Request, name: str) -> ServedModel:
    return lookup_model(request, name)


ModelDep = Annotated[ServedModel, Depends(get_model)]


def model_for(request: Request, operation: str) -> ServedModel:
    """The model named in the path, or 404; 422 when it lacks ``operation``. A plain call."""
    served = lookup_model(request, request.path_params["name"])
    if operation not in served.operations:
        raise ApiError(
            422,
            "unsupported_operation",
            f"model {served.name} is a {served.kind} model and cannot {operation}; "
            f"it supports: {', '.join(served.operations)}",
        )
    return served


def supporting(operation: str) -> Callable[[Request, str], Awaitable[ServedModel]]:
    """A dependency giving the named model, or 422 when it lacks ``operation``."""

    async def dependency(request: Request, name: str) -> ServedModel:
        return model_for(request, operation)

    return dependency
