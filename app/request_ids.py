"""Request ids: :class:`RequestIdMiddleware` takes the request's ``X-Request-ID`` (or makes one),
keeps it in a context variable while the request runs (``current_request_id``: every log line of
the request carries it, ``app.logs``) and returns it in the response's ``X-Request-ID``.
"""

from __future__ import annotations

import random
import re
from contextvars import ContextVar
from typing import cast

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
# what a client may send: 1-128 visible ASCII characters (no spaces, so a log line stays parseable)
_VALID_ID = re.compile(rb"[\x21-\x7e]{1,128}")

# a random (version 4) UUID as 32 hex digits without building a UUID object. Request ids need to
# be unique, not unguessable; each process seeds its own.
_UUID4_KEEP = ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    return f"{random.getrandbits(128) & _UUID4_KEEP | _UUID4_SET:032x}"


_request_id: ContextVar[str] = ContextVar("aeserve_request_id", default="-")


def current_request_id() -> str:
    """The id of the request being served, ``-`` outside one."""
    return _request_id.get()


# the scope key by which the server (app/protocol.py) and the app share a request's id, decided
# once (``request_id_of``)
REQUEST_ID_KEY = "aeserve.request_id"


def request_id_of(scope: Scope) -> str:
    """The request's id: its ``X-Request-ID`` when it sent a valid one, else a new one; decided
    once and kept in the scope, so that the app and a refusal by the server name it alike."""
    found = scope.get(REQUEST_ID_KEY)
    if found is None:
        raw = next((value for key, value in scope["headers"] if key == REQUEST_ID_HEADER), b"")
        found = raw.decode("ascii") if _VALID_ID.fullmatch(raw) else new_request_id()
        scope[REQUEST_ID_KEY] = found
    return cast(str, found)


class RequestIdMiddleware:
    """Pure ASGI middleware: a request id for the request's logs and its response header.

    On an exception the id is left set: the request's task ends with it, and the error handler
    that runs outside this middleware still logs it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # a WebSocket denial is an HTTP answer too
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        raw = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                message = {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, raw)]}
            await send(message)

        token = _request_id.set(request_id)
        await self.app(scope, receive, send_with_id)
        _request_id.reset(token)
