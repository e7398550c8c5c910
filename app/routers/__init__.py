"""One router per resource: health, models, image operations, latent operations."""

from __future__ import annotations

from fastapi.routing import APIRoute


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI ``operationId``: its function's name (``denoise``, ``list_models``), the
    method name a generated client gives it, in place of FastAPI's default of name, path and method
    (``denoise_v1_models__name__denoise_post``). Unique, as the route functions' names are."""
    return route.name
