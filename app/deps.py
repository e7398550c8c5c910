"""``Annotated`` dependencies shared by the routers. All async: no threadpool hop on hot routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from app.errors import ApiError
from app.kinds import ServedModel
from app.lifecycle import Ticket
from app.registry import Registry
from app.settings import Settings
from app.uploads import read_images


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


async def get_model(registry: RegistryDep, name: str) -> ServedModel:
    """The model named in the path, or 404 naming the ones there are."""
    served = registry.models.get(name)
    if served is None:
        known = ", ".join(sorted(registry.models)) or "none loaded"
        raise ApiError(404, "unknown_model", f"no model named {name!r}; available: {known}")
    return served


ModelDep = Annotated[ServedModel, Depends(get_model)]


def supporting(operation: str) -> Callable[[ServedModel], Awaitable[ServedModel]]:
    """A dependency giving the named model, or 422 when it lacks ``operation``."""

    async def dependency(served: ModelDep) -> ServedModel:
        if not served.supports(operation):
            raise ApiError(
                422,
                "unsupported_operation",
                f"model {served.name} is a {served.kind} model and cannot {operation}; "
                f"it supports: {', '.join(served.operations)}",
            )
        return served

    return dependency


async def get_ticket(request: Request, settings: SettingsDep) -> AsyncIterator[Ticket]:
    """The request's ticket: its deadline starts now; its work is given back when it ends."""
    ticket = Ticket(settings.request_timeout_s, request.receive)
    try:
        yield ticket
    finally:
        ticket.close()


TicketDep = Annotated[Ticket, Depends(get_ticket)]


async def get_uploads(
    request: Request, served: ModelDep, settings: SettingsDep, ticket: TicketDep
) -> list[bytes]:
    """The uploaded images, read only when the model can take more work (503 otherwise)."""
    served.budget.precheck()
    return await read_images(request, settings)


Uploads = Annotated[list[bytes], Depends(get_uploads)]
