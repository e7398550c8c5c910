"""WebSocket handshakes: the service has no WebSocket endpoints, and says so in its error shape.

Left to Starlette, an unmatched handshake is closed, which a server turns into an empty 403, and
one to a mounted folder (the offline docs' assets) is closed by the mount. This middleware sits
just outside the router and answers every handshake, whatever its path: 404 ``not_found`` with the
JSON error body, through the ASGI ``websocket.http.response`` extension (uvicorn has it); a server
without the extension gets a close, which it answers 403. HTTP passes through untouched.
"""

from __future__ import annotations

from fastapi import WebSocket, status
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import error_response

DENIAL_EXTENSION = "websocket.http.response"
CLOSE_REASON = "this service has no WebSocket endpoints"  # a close reason has at most 123 bytes


class NoWebSocketsMiddleware:
    """Refuse every WebSocket handshake: 404 ``not_found`` in JSON where the server can send it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        if DENIAL_EXTENSION in scope.get("extensions", {}):
            await websocket.send_denial_response(error_response(
                404, "not_found",
                f"no WebSocket endpoint at {scope['path']}: this service has none; its API is plain "
                "HTTP (see /docs)"))
        else:
            await websocket.close(status.WS_1008_POLICY_VIOLATION, CLOSE_REASON)
