"""A route class for the hot endpoints that read the raw ``Request`` themselves.

``denoise`` and ``encode`` take only the ``Request`` (they parse their own query parameters and
uploads, see ``app/query.py``). FastAPI still resolves dependencies, reads the telemetry context and
builds an endpoint context for every call of such a route; on a 28x28 denoise that was 30-40 µs of
the ~790 µs the event loop spends per request (docs/serving.md). ``RawRequestRoute`` uses FastAPI's
documented extension point, a custom ``APIRoute.get_route_handler``, to call the endpoint directly.
The route stays an ``APIRoute``: same path matching, same OpenAPI entry, same error handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class RawRequestRoute(APIRoute):
    """An ``APIRoute`` whose endpoint is ``async (request) -> Response | JSON-able dict``."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        d = self.dependant
        extra = [
            *d.path_params, *d.query_params, *d.header_params, *d.cookie_params, *d.body_params,
            *d.dependencies,
        ]
        injected = (d.response_param_name, d.background_tasks_param_name, d.websocket_param_name)
        if extra or any(injected) or d.request_param_name is None:
            raise TypeError(f"{path}: a RawRequestRoute endpoint takes the Request and nothing else")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        status = self.status_code or 200

        async def handler(request: Request) -> Response:
            result = await endpoint(request)
            return result if isinstance(result, Response) else JSONResponse(result, status)

        return handler


def raw_post(router: APIRouter, path: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
    """``@router.post(path, ...)`` for a raw-request endpoint."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(
            path, endpoint, methods=["POST"], route_class_override=RawRequestRoute, **kwargs
        )
        return endpoint

    return register
