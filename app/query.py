"""Query parameters of the hot routes, read without FastAPI's per-parameter machinery.

``denoise`` and ``encode`` take only the ``Request``: resolving one dependency and a few ``Query``
parameters cost about a fifth of the service's own per-request CPU on a 28x28 image (measured with
the benchmark's workload, see docs/serving.md). These helpers validate the same way (422 naming the
parameter) and ``openapi`` documents them.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import Request

from app.errors import ApiError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bad(name: str, value: str, expected: str) -> ApiError:
    return ApiError(422, "invalid_request", f"invalid request: query.{name}: {value!r} is not {expected}")


def _value(request: Request, name: str) -> str | None:
    """The parameter's raw value; no query string at all (the usual case) parses nothing."""
    if not request.scope.get("query_string"):
        return None
    return request.query_params.get(name)


def flag(request: Request, name: str) -> bool:
    value = _value(request, name)
    if value is None:
        return False
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _bad(name, value, "a boolean (true/false)")


def number(request: Request, name: str, low: float, high: float) -> float | None:
    value = _value(request, name)
    if value is None:
        return None
    try:
        parsed = float(value)
    except ValueError:
        raise _bad(name, value, "a number") from None
    if not (math.isfinite(parsed) and low <= parsed <= high):
        raise _bad(name, value, f"a number from {low:g} to {high:g}")
    return parsed


def integer(request: Request, name: str, low: int, high: int) -> int | None:
    value = _value(request, name)
    if value is None:
        return None
    try:
        parsed = int(value)
    except ValueError:
        raise _bad(name, value, "an integer") from None
    if not low <= parsed <= high:
        raise _bad(name, value, f"an integer from {low} to {high}")
    return parsed


def openapi(*params: tuple[str, str, str]) -> dict[str, Any]:
    """``openapi_extra`` for a hot route: the model name and ``(name, type, description)``."""
    spec: list[dict[str, Any]] = [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "model name, a folder of the checkpoint directory"}
    ]
    spec += [
        {"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
        for n, t, d in params
    ]
    body = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        },
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    }
    return {"parameters": spec, "requestBody": {"required": True, "content": body}}
