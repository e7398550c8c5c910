"""One JSON error shape for every failure: ``{"error": {"code": ..., "message": ...}}``.

``ApiError`` carries the status, a stable code and a message; ``responses(...)`` documents the
shape on each status a route can answer, so the OpenAPI schema lists every error a client may see.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.request_ids import current_request_id

log = logging.getLogger("aeserve")


class ApiError(Exception):
    """An error the client can act on: HTTP status, a stable code and a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """This error as the service's JSON answer, its headers included."""
        return error_response(self.status, self.code, self.message, self.headers)


class ClientDisconnected(Exception):
    """The client went away before its answer: the work stops, nothing is sent, it counts as 499."""


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: a stable ``code`` to branch on and a ``message`` for people."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Malformed request (multipart body, Content-Length, Accept)",
    401: "Missing or wrong API token",
    403: "An admin route while the service has no API token",
    404: "No such model or route",
    406: "The Accept header accepts none of the media types on offer (not_acceptable)",
    408: "The body did not arrive within AESERVE_BODY_TIMEOUT_S",
    409: "The checkpoint directory is gone or holds no model: nothing was reloaded",
    413: "Body, pixels or work over a limit (payload_too_large, too_many_pixels, too_much_work)",
    415: "Not an image this service decodes",
    422: "Invalid parameters, latents or images for this model",
    503: "Overloaded, timed out, shutting down or not ready; retry after Retry-After seconds",
}


# headers an error answer carries, as OpenAPI documents them
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "seconds to wait before a retry",
                          "schema": {"type": "integer"}}},
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with the error schema (and the headers
    it carries)."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status],
                 **({"headers": _HEADERS[status]} if status in _HEADERS else {})}
        for status in statuses
    }


def png_answer(description: str, **headers: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI for a 200 that may be one PNG (``image/png``, binary), with its headers and what
    they mean."""
    return {200: {
        "description": description,
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        **({"headers": {name: {"description": meaning, "schema": {"type": "string"}}
                        for name, meaning in headers.items()}} if headers else {}),
    }}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


def limit_exceeded(what: str, limit: int, setting: str) -> ApiError:
    """422 for a count over its configured limit: ``what`` (``n=300``) names the value sent."""
    return ApiError(422, "limit_exceeded", f"{what} is over the limit of {limit} (AESERVE_{setting})")


def overloaded(message: str, retry_after_s: int = 1) -> ApiError:
    return ApiError(503, "overloaded", message, {"Retry-After": str(retry_after_s)})


def body_timeout(timeout_s: float) -> ApiError:
    return ApiError(
        408,
        "body_timeout",
        f"the request body did not arrive within {timeout_s:g} s (AESERVE_BODY_TIMEOUT_S)",
        {"Connection": "close"},
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", _describe_validation(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = str(exc.detail)
    # a HEAD's headers are what GET's would be (RFC 9110, 9.3.2), Content-Length included: the
    # unsent body names GET
    method = "GET" if request.method == "HEAD" else request.method
    if exc.status_code == 404:
        message = f"no route {method} {request.url.path}; see GET /v1/models and /docs"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        message = f"{method} is not allowed on {request.url.path}"
        allowed = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        if "GET" in allowed and "HEAD" not in allowed:  # app/head.py answers HEAD wherever GET is
            headers["Allow"] = ", ".join([*allowed, "HEAD"])
    return error_response(exc.status_code, code, message, headers)


def internal_error(headers: Mapping[str, str] | None = None) -> JSONResponse:
    """500 ``internal_error``: the answer to an error the service did not expect."""
    return error_response(
        500, "internal_error", "the server failed to handle this request; it has been logged",
        headers,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """The backstop for an error in a middleware outside ``app.unexpected.UnexpectedErrors``."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    # answered outside the request-id middleware: the id goes on by hand, so a report can cite it
    return internal_error({"X-Request-ID": current_request_id()})


def install_error_handlers(app: FastAPI) -> None:
    """Every error in the service's shape, and the OpenAPI description saying so."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    _without_fastapis_422(app)


def _without_fastapis_422(app: FastAPI) -> None:
    """Leave FastAPI's own 422 ``Validation Error`` out of the OpenAPI description. FastAPI adds it
    to every route with a parameter, even one that cannot fail (a path's model name, the Accept
    header), and in a shape this service never answers in: a route where a 422 can happen
    documents it with ``responses(422)``, in the error shape."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()  # FastAPI's, kept as app.openapi_schema: trimmed here once
        fastapis = {"$ref": "#/components/schemas/HTTPValidationError"}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                answer = operation.get("responses", {}).get("422", {})
                if answer.get("content", {}).get("application/json", {}).get("schema") == fastapis:
                    del operation["responses"]["422"]
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
