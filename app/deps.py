"""``Annotated`` dependencies shared by the routers. All async: no threadpool hop on hot routes.

- ``ModelDep``: the model named in the path (404 naming the ones there are);
  ``Annotated[ServedModel, Depends(ModelFor("decode"))]``: that model, able to decode (422 if not).
- ``dependencies=JSON_ONLY`` (with ``responses=JSON_ONLY_ERRORS``): a route that answers only JSON
  refuses, before any work, an Accept that rules JSON out (406 ``not_acceptable``, 400 for a
  malformed one); ``*/*``, ``application/*`` and a missing Accept take JSON.
- ``await read_json(request, settings, DecodeBody)``: the JSON body as that model, read through
  ``app.uploads.read_body``, so a body cut short ends as the 408 or the disconnect it was
  (FastAPI's own body parameter turns both into a 400). A route reads it inside its request's
  ticket (a model being reloaded then waits for the request) and documents it with
  ``openapi_extra=request_body({"application/json": DecodeBody})`` (``app.routers``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from app.drain import Drain
from app.errors import ApiError, responses
from app.kinds import ServedModel
from app.kinds.inline import inline_or_thread
from app.metrics import Metrics
from app.negotiation import JSON, negotiate
from app.registry import Registry
from app.settings import Settings
from app.uploads import media_type, read_body


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


async def get_drain(request: Request) -> Drain:
    drain: Drain = request.app.state.drain
    return drain


DrainDep = Annotated[Drain, Depends(get_drain)]


async def models_loaded(request: Request) -> bool:
    """Whether the lifespan has loaded and warmed every model and not begun to shut down."""
    return bool(request.app.state.ready)


LoadedDep = Annotated[bool, Depends(models_loaded)]


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


ModelName = Annotated[str, Path(description="the model: a folder of the checkpoint directory")]


async def get_model(request: Request, name: ModelName) -> ServedModel:
    """The model named in the path, or 404 naming the ones there are."""
    models = request.app.state.registry.models
    served: ServedModel | None = models.get(name)
    if served is None:
        known = ", ".join(sorted(models)) or "none loaded"
        raise ApiError(404, "unknown_model", f"no model named {name!r}; available: {known}")
    return served


ModelDep = Annotated[ServedModel, Depends(get_model)]


class ModelFor:
    """The model named in the path, able to do ``operation``: 404 for an unknown model, 422
    ``unsupported_operation`` naming what it can do for one that cannot."""

    def __init__(self, operation: str) -> None:
        self.operation = operation

    async def __call__(self, served: ModelDep) -> ServedModel:
        if not served.supports(self.operation):
            raise served.unsupported(self.operation)
        return served


async def json_answer(accept: Annotated[list[str] | None, Header(description=(
        "application/json only (also */* and a missing Accept); 406 when Accept refuses it"))] = None,
) -> None:
    """Refuse, before any work, a client whose Accept rules out the only answer there is: JSON."""
    negotiate(accept, (JSON,))


JSON_ONLY = [Depends(json_answer)]
JSON_ONLY_ERRORS = responses(400, 406)


BodyT = TypeVar("BodyT", bound=BaseModel)


def is_json(media: str) -> bool:
    """``application/json`` or an ``application/*+json`` media type."""
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def read_json(request: Request, settings: Settings, model: type[BodyT],
                    default: Callable[[], BodyT] | None = None) -> BodyT:
    """The request's JSON body, validated as ``model``.

    Read through ``read_body``: a body slower than ``AESERVE_BODY_TIMEOUT_S`` is 408
    ``body_timeout`` and a client that leaves mid-body is a disconnect (499 in the metrics). An
    empty body is ``default()``, or 422 when there is none; a Content-Type that is not JSON (or
    none) is 415; invalid JSON or fields are 422 ``invalid_request``, in the shape of FastAPI's own
    body validation errors.
    """
    body = await read_body(request, settings)
    if not body:
        if default is not None:
            return default()
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required",
                                       "input": None}])
    media = media_type(request)
    if not is_json(media):  # none is not JSON either, as for FastAPI's own JSON bodies
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type {media or '(none)'} is not JSON: send the body with Content-Type: "
                       "application/json (curl: -H 'Content-Type: application/json')")
    try:  # a large body (up to AESERVE_MAX_JSON_BYTES) is parsed in the threadpool, off the loop
        return await inline_or_thread("parse", 0, partial(model.model_validate_json, body),
                                      nbytes=len(body))
    except ValidationError as exc:  # not JSON, too deeply nested, or not this shape
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in exc.errors(include_url=False)]) from None

