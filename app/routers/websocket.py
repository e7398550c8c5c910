"""WebSocket handshakes: the service has no WebSocket endpoints, and says so in its error shape.

Without this route Starlette closes an unmatched handshake, which a server turns into an empty
403. This route catches every WebSocket path and answers 404 ``not_found`` with the JSON error
body, through the ASGI ``websocket.http.response`` extension (uvicorn has it); a server without
the extension gets a close, which it answers 403. Include it after any WebSocket route.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket, status

from app.errors import error_response

router = APIRouter()

DENIAL_EXTENSION = "websocket.http.response"
CLOSE_REASON = "this service has no WebSocket endpoints"  # a close reason has at most 123 bytes


@router.websocket("/{path:path}")
async def no_websockets(websocket: WebSocket, path: str) -> None:
    """Refuse the handshake: 404 ``not_found`` in JSON where the server can send it."""
    if DENIAL_EXTENSION in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(
            404, "not_found",
            f"no WebSocket endpoint at /{path}: this service has none; its API is plain HTTP "
            "(see /docs)"))
    else:
        await websocket.close(status.WS_1008_POLICY_VIOLATION, CLOSE_REASON)
