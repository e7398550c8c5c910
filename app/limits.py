"""Request body limits, enforced before the body is read: by Content-Length, then while streaming.

Image uploads (``multipart/form-data``, ``image/*``) have ``AESERVE_MAX_BODY_BYTES``; any other
body, JSON latents above all, has the smaller ``AESERVE_MAX_JSON_BYTES``: latents are small, and
FastAPI parses a JSON body (``application/json`` or any ``+json`` type) on the event loop, where a
large one would hold up every other request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, error_response

BODY_SETTING, JSON_SETTING = "AESERVE_MAX_BODY_BYTES", "AESERVE_MAX_JSON_BYTES"
UPLOADS = (b"multipart/form-data", b"image/")  # image uploads; any other body has the JSON limit


def too_large(limit: int, setting: str) -> ApiError:
    advice = ("a body that is not an image upload (multipart/form-data or image/*) has this "
              "limit; send fewer latents") if setting == JSON_SETTING else "send fewer or smaller images"
    return ApiError(413, "payload_too_large",
                    f"request body is over the limit of {limit} bytes ({setting}); {advice}",
                    {"Connection": "close"})  # the rest of the body is not read


class BodySizeLimitMiddleware:
    """413 for a declared Content-Length over the limit (nothing read); counts chunked bodies.

    A chunked body that crosses the limit is answered 413 here, at once; the app's read of the body
    then fails and whatever it would answer is dropped (a route that reads its body through FastAPI
    would otherwise turn the error into a 400).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.json_limit = min(max_json_bytes, max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        limit, setting = self.json_limit, JSON_SETTING  # no Content-Type: not an image upload
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"content-type" and value.split(b";", 1)[0].strip().lower().startswith(UPLOADS):
                limit, setting = self.limit, BODY_SETTING
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                response = error_response(400, "bad_request", "invalid Content-Length header")
                await response(scope, receive, send)
                return
            if length > limit:
                err = too_large(limit, setting)
                await error_response(err.status, err.code, err.message, err.headers)(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server enforces the declared length
            return
        seen = 0
        answered = started = False

        async def counting_receive() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    err = too_large(limit, setting)
                    if not started and not answered:
                        answered = True
                        await error_response(err.status, err.code, err.message, err.headers)(
                            scope, receive, send)
                    raise err
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 has gone out: what the app answers after it is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)
