"""One router per resource: health, models, image operations, latent operations."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from app.errors import ErrorBody


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI ``operationId``: its function's name (``denoise``, ``list_models``), the
    method name a generated client gives it, in place of FastAPI's default of name, path and method
    (``denoise_v1_models__name__denoise_post``). Unique, as the route functions' names are."""
    return route.name


# every route's answer to an error the service did not expect (``app.errors.internal_error``),
# in the error shape: documented, so that a generated client reads it as it reads the others
SERVER_ERROR: dict[int | str, dict[str, Any]] = {500: {
    "model": ErrorBody,
    "description": "An error the service did not expect (internal_error), logged under the "
                   "answer's X-Request-ID",
}}
