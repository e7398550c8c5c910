"""Byte ranges: none. The files the service serves are answered whole, and say so
(``Accept-Ranges: none``).

The only files it serves are the demo page's and the offline API docs' assets, a few hundred
kilobytes at most, and HTTP lets a server ignore ``Range``. Starlette's file responses honoured it,
and answered a range they could not serve (``bytes=5-1``, ``items=0-9``, a start past the end)
with a plain-text 400 or 416 of their own, not the service's JSON error. The demo page's routes
answer with :class:`WholeFileResponse`, and :func:`whole_static_mounts` wraps the docs' assets
(the ``StaticFiles`` mount ``FastAPIOffline`` makes); the API's routes serve no files and see the
request as it came.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import FileResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DROPPED = (b"range", b"if-range")


class WholeFiles:
    """Files served whole by ``app``: ``Range`` and ``If-Range`` dropped from the request, and
    ``Accept-Ranges: none`` on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(name, value) for name, value in scope["headers"] if name not in DROPPED]

        async def whole(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    (name, b"none" if name == b"accept-ranges" else value)
                    for name, value in message.get("headers", [])
                ]}
            await send(message)

        await self.app({**scope, "headers": headers}, receive, whole)


class WholeFileResponse(FileResponse):
    """A file answered whole, whatever ``Range`` asks (:class:`WholeFiles`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await WholeFiles(super().__call__)(scope, receive, send)


def whole_static_mounts(routes: Iterable[BaseRoute]) -> None:
    """Every ``StaticFiles`` mount among ``routes`` answers whole (:class:`WholeFiles`)."""
    for route in routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            route.app = WholeFiles(route.app)
