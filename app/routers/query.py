"""Query strings held to what the route declares, as JSON bodies are (``extra="forbid"``).

A misspelt parameter (``?sigam=25``) would otherwise be dropped without a word and the default
used, and a parameter given twice (``?sigma=5&sigma=50``) would quietly take its last value.
``STRICT_QUERY``, a router dependency, answers 422 ``invalid_request`` for either, naming the
parameter and, for an unknown one, the parameters the route takes. It reads those from the route's
own declaration (its ``Query`` parameters and query models), so a route declares them once.

The model operations (``POST /v1/models/{name}/...``) are strict, ``decode`` and ``sample`` too,
whose parameters go in the JSON body; the routes that take no parameters at all (the GET routes,
``POST /v1/admin/reload``) ignore a query string, so a cache-busting ``?_=123`` works there.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict

from app.errors import ApiError

_SEQUENCES = (list, tuple, set, frozenset)


def _repeatable(annotation: Any) -> bool:
    """Whether a parameter of this type takes several values (``list[int]``, ``list[int] | None``)."""
    origin = get_origin(annotation)
    if origin in _SEQUENCES or annotation in _SEQUENCES:
        return True
    if origin in (Union, UnionType):
        return any(_repeatable(arg) for arg in get_args(annotation) if arg is not type(None))
    return False


def _model(annotation: Any) -> type[BaseModel] | None:
    """The query model a parameter stands for (``Annotated[Model, Query()]``), if it is one."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _query_fields(dependant: Dependant) -> Iterator[tuple[str, bool]]:
    """(name, repeatable) of every query parameter of a route, its dependencies' included."""
    for field in dependant.query_params:
        model = _model(field.field_info.annotation)
        if model is None:
            yield field.alias, _repeatable(field.field_info.annotation)
            continue
        for name, info in model.model_fields.items():
            yield info.alias or name, _repeatable(info.annotation)
    for sub in dependant.dependencies:
        yield from _query_fields(sub)


def declared_query(route: APIRoute) -> dict[str, bool]:
    """The query parameters ``route`` takes, each with whether it may be repeated."""
    return dict(_query_fields(route.dependant))


async def strict_query(request: Request) -> None:
    """422 for a query parameter the route does not take, or a single-valued one given twice."""
    params = request.query_params
    route = request.scope.get("route")
    if not params or not isinstance(route, APIRoute):
        return
    takes = declared_query(route)  # some microseconds: only for a request with a query string
    for name in params:
        if name not in takes:
            offer = (f"it takes {', '.join(sorted(takes))}" if takes
                     else "it takes no query parameters")
            raise ApiError(422, "invalid_request",
                           f"unknown query parameter {name!r} for {request.method} "
                           f"{request.url.path}: {offer}")
        if not takes[name] and len(params.getlist(name)) > 1:
            raise ApiError(422, "invalid_request",
                           f"query parameter {name!r} is given {len(params.getlist(name))} times; "
                           "it takes one value: give it once")


STRICT_QUERY = [Depends(strict_query)]


class QueryModel(BaseModel):
    """A route's query parameters as one model (``Annotated[Model, Query()]``), closed to others
    as the JSON bodies are, for a caller that bypasses ``STRICT_QUERY``."""

    model_config = ConfigDict(extra="forbid")
