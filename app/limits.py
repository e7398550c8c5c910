"""Request body limit, enforced before the body is read: by Content-Length, then while streaming."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, error_response


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "payload_too_large",
        f"request body is over the limit of {limit} bytes (AESERVE_MAX_BODY_BYTES); "
        "send fewer or smaller images",
    )


class BodySizeLimitMiddleware:
    """413 for a declared Content-Length over the limit (nothing read); counts chunked bodies."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    response = error_response(400, "bad_request", "invalid Content-Length header")
                    await response(scope, receive, send)
                    return
                if declared > self.limit:
                    err = too_large(self.limit)
                    response = error_response(err.status, err.code, err.message)
                    response.headers["Connection"] = "close"
                    await response(scope, receive, send)
                    return
                await self.app(scope, receive, send)  # the server enforces the declared length
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large(self.limit)
            return message

        await self.app(scope, counting_receive, send)
