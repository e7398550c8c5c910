"""HEAD for every GET route, as HTTP asks (RFC 9110, 9.3.2: a server that answers GET answers HEAD).

FastAPI registers only the methods a route names, so ``@router.get`` alone answers HEAD with 405
(Starlette's plain ``Route`` adds HEAD to GET; FastAPI's ``APIRoute`` does not), and naming HEAD on
every route would put each one in the OpenAPI description twice. This middleware, just outside the
router, runs a HEAD request whose path has a GET route as that GET (the route it matched is handed
back to the middlewares outside) and sends its status and headers without the body. A HEAD to a
path without a GET route goes on unchanged: 405 naming the methods that path takes, or 404.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    """Answer HEAD as GET, headers only, on the paths that have a GET route among ``routes``."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's own list: routes added later count too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = dict(scope, method="GET")
        if not any(route.matches(as_get)[0] is Match.FULL for route in self.routes):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                _routed(as_get, scope)
            elif message["type"] in ("http.response.body", "http.response.pathsend"):
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(as_get, receive, headers_only)
        finally:
            _routed(as_get, scope)


def _routed(inner: Scope, outer: Scope) -> None:
    """What the router wrote into the GET's scope, for the middlewares outside (metrics, tracing)."""
    for key in ("route", "endpoint", "path_params"):
        if key in inner:
            outer[key] = inner[key]
