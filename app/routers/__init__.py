"""One router per resource: health, models, image operations, latent operations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.constants import REF_TEMPLATE
from fastapi.routing import APIRoute
from pydantic import BaseModel

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


def request_body(content: Mapping[str, type[BaseModel] | dict[str, Any]],
                 required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` documenting a body the route reads itself, inside its request's ticket
    (``read_json``, ``read_images``): a body parameter would have FastAPI read it before the route
    runs, so FastAPI does not document it. A media type's model is a ``$ref`` to the component of
    its name (``document_bodies`` adds it), the type a generated client names so; a raw schema (an
    ``image/*`` upload's bytes) is given as it is."""
    return {"requestBody": {"required": required, "content": {
        media: {"schema": {"$ref": REF_TEMPLATE.format(model=schema.__name__)}
                if isinstance(schema, type) else schema}
        for media, schema in content.items()
    }}}


def document_bodies(app: FastAPI, models: Iterable[type[BaseModel]]) -> None:
    """Add the models that ``request_body`` refers to to ``app``'s OpenAPI components: each as
    pydantic's JSON schema of it (what the route validates the body with), the models it nests
    beside it. A name FastAPI already gave another schema is an error, not a silent overwrite."""
    build = app.openapi
    models = tuple(models)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI's, kept as app.openapi_schema: completed here once
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            body = model.model_json_schema(ref_template=REF_TEMPLATE)
            for name, definition in {**body.pop("$defs", {}), model.__name__: body}.items():
                if components.setdefault(name, definition) != definition:
                    raise ValueError(f"two OpenAPI schemas named {name}: rename the body model")
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
