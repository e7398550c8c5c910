"""Byte ranges: none. Every answer is whole, and says so (``Accept-Ranges: none``).

The only files the service serves are the demo page's and the offline API docs' assets, a few
hundred kilobytes at most, and HTTP lets a server ignore ``Range``. Starlette's file responses
honoured it, and answered a range they could not serve (``bytes=5-1``, ``items=0-9``, a start past
the end) with a plain-text 400 or 416 of their own, not the service's JSON error. This middleware
drops ``Range`` and ``If-Range`` from every GET and HEAD request before the routes see them, and
turns a file response's ``Accept-Ranges: bytes`` into ``none``. POSTs pass through untouched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DROPPED = (b"range", b"if-range")


class NoRangesMiddleware:
    """Serve every GET and HEAD whole: ``Range`` ignored, ``Accept-Ranges: none``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
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
