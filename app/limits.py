"""Request body limits, enforced before the body is read: by Content-Length, then while streaming.

Image uploads (``multipart/form-data``, ``image/*``) have ``AESERVE_MAX_BODY_BYTES``; any other
body, JSON latents above all, has the smaller ``AESERVE_MAX_JSON_BYTES``: latents are small, and
a JSON body (``application/json`` or any ``+json`` type) is parsed whole before its size in latents
is checked (``app.deps.read_json``; over 32 KiB in the threadpool).

Bodies are bounded in all too: ``AESERVE_MAX_BODIES_BYTES`` (``BodyBytes``) is what the process
reads and holds at once, before a request is admitted by its work (``app/admission.py``) and
whatever the number of connections. A body reserves its bytes when its request starts: its
Content-Length up front, a chunked body chunk by chunk as it arrives. It gives them back when the
request ends, its answer sent or the request failed, not when it is admitted: the route holds the
bytes, and the images parsed from them, until its answer. A body that does not fit is answered 503
``overloaded`` with ``Retry-After``; a declared body is then not read (the server drops it as it
arrives, and the connection stays open unless the client waits for ``100 Continue``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, error_response, overloaded

BODY_SETTING, JSON_SETTING = "AESERVE_MAX_BODY_BYTES", "AESERVE_MAX_JSON_BYTES"
UPLOADS = (b"multipart/form-data", b"image/")  # image uploads; any other body has the JSON limit


def too_large(limit: int, setting: str) -> ApiError:
    advice = ("a body that is not an image upload (multipart/form-data or image/*) has this "
              "limit; send fewer latents") if setting == JSON_SETTING else "send fewer or smaller images"
    # the connection stays: the server reads the rest of the body and drops it (within
    # AESERVE_BODY_TIMEOUT_S), as for a 503. Closed with the body unread, the connection would be
    # reset under a client or proxy still sending it, and the answer lost (nginx says 502)
    return ApiError(413, "payload_too_large",
                    f"request body is over the limit of {limit} bytes ({setting}); {advice}")


class BodyBytes:
    """Body bytes reserved by the requests in flight, against one limit (an app's: a process's)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, size: int) -> None:
        """Hold ``size`` more bytes; 503 ``overloaded`` when they do not fit."""
        if self.used + size > self.limit:
            raise overloaded(
                f"the server is reading or holding {self.used} bytes of request bodies, of the "
                f"{self.limit} it allows at once (AESERVE_MAX_BODIES_BYTES); this body needs "
                f"{size} more. Retry after the Retry-After delay"
            )
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size


class BodySizeLimitMiddleware:
    """413 for a declared Content-Length over the limit (answered first; the server then drops the
    body as it arrives); counts chunked bodies; 503
    for a body that does not fit in ``AESERVE_MAX_BODIES_BYTES`` beside the others.

    A chunked body that crosses a limit is answered here, at once; the app's read of the body
    then fails and whatever it would answer is dropped (a route that reads its body through FastAPI
    would otherwise turn the error into a 400).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_json_bytes: int,
                 max_bodies_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.json_limit = min(max_json_bytes, max_body_bytes)
        self.bodies = BodyBytes(max_bodies_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        expects_continue = False
        limit, setting = self.json_limit, JSON_SETTING  # no Content-Type: not an image upload
        content_types = 0
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"content-type":
                content_types += 1
                if value.split(b";", 1)[0].strip().lower().startswith(UPLOADS):
                    limit, setting = self.limit, BODY_SETTING
            elif name == b"expect":
                expects_continue = value.strip().lower() == b"100-continue"
        if content_types > 1:  # one body has one type; which one a reader takes is anyone's guess
            response = error_response(400, "bad_request",
                                      f"{content_types} Content-Type headers: send one")
            await response(scope, receive, send)
            return
        bodies = self.bodies
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                response = error_response(400, "bad_request", "invalid Content-Length header")
                await response(scope, receive, send)
                return
            try:
                if length > limit:
                    raise too_large(limit, setting)
                bodies.reserve(length)
            except ApiError as err:
                if expects_continue:  # the client holds its body back: the connection cannot go on
                    err.headers["Connection"] = "close"
                await err.response()(scope, receive, send)
                return
            try:
                await self.app(scope, receive, send)  # the server enforces the declared length
            finally:
                bodies.release(length)
            return
        seen = 0  # and reserved
        answered = started = False

        async def counting_receive() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request" and (size := len(message.get("body", b""))):
                try:
                    if seen + size > limit:
                        raise too_large(limit, setting)
                    bodies.reserve(size)
                except ApiError as err:
                    if not started and not answered:
                        answered = True
                        await err.response()(scope, receive, send)
                    raise
                seen += size
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the refusal has gone out: what the app answers after it is dropped
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        finally:
            bodies.release(seen)
