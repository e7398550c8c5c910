"""Query strings held to what the route declares, as JSON bodies are (``extra="forbid"``).

A misspelt parameter (``?sigam=25``) would otherwise be dropped without a word and the default
used, and a parameter given twice (``?sigma=5&sigma=50``) would quietly take its last value.
``STRICT_QUERY``, a router dependency, answers 422 ``invalid_request`` for either, naming the
parameter and, for an unknown one, the parameters the route takes. It reads those from the route's
own declaration (its ``Query`` parameters and query models: ``app/route_query.py``), so a route
declares them once.

The model operations (``POST /v1/models/{name}/...``) are strict, ``decode`` and ``sample`` too,
whose parameters go in the JSON body; the routes that take no parameters at all (the GET routes,
``POST /v1/admin/reload``) ignore a query string, so a cache-busting ``?_=123`` works there.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict

from app.errors import ApiError
from app.route_query import declared_query


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
