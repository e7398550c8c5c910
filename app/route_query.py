"""The query parameters a route declares: its ``Query`` parameters and query models, its
dependencies' included, each with whether it may be repeated.

Read from the route's own declaration, so a route declares its parameters once: the strict query
string (``app/routers/query.py``) refuses any other, and an image upload (``app/uploads.py``)
refuses one sent as a form field.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

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
