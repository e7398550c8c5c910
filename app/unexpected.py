"""The innermost middleware: an unexpected error becomes a logged 500 in the error shape, the
connection kept (``app.errors`` has the handler for one in a middleware outside it)."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ClientDisconnected, internal_error
from app.tracing import record_error

log = logging.getLogger("aeserve")


class UnexpectedErrors:
    """The innermost middleware: an unexpected exception becomes a logged 500 answer, and the
    connection stays open for the client's next request.

    Starlette's own handler for ``Exception`` re-raises after answering, and the server then closes
    the connection, so a keep-alive client would lose its next request too. A client that went away
    passes on (the metrics count it), and so does an error after the answer has begun: the server
    must close a half-sent answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except (ClientDisconnected, ClientDisconnect):
            raise
        except Exception as exc:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            record_error(exc)
            await internal_error()(scope, receive, send)
