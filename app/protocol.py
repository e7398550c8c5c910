"""The HTTP protocol the server runs, through uvicorn's public ``http`` option (its protocol class).

``GuardedHttpToolsProtocol``: the request line and headers must arrive within
``AESERVE_HEADER_TIMEOUT_S`` (408 and close otherwise: a client that dribbles header bytes cannot
hold a file descriptor for ever) and be at most ``AESERVE_MAX_HEADER_BYTES`` (431 and close); a body
must arrive within ``AESERVE_BODY_TIMEOUT_S`` of the end of its headers (408 and close; a body that
comes whole with its headers, the usual upload, never starts the timer). uvicorn's httptools
protocol has none of these limits; its h11 protocol caps the size but has no timeout, and costs
throughput (docs/serving.md, "Protocol limits"). It also offers each request the
``aeserve.disconnect`` ASGI extension: callbacks run when the client goes away, so a request learns
of it without a task per request waiting on ``receive``. During a drain it keeps a connection whose
request is on its way open (``app.server`` says why).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.disconnects import (
    BODY_TIMED_OUT,
    CLIENT_GONE,
    DISCONNECT_EXTENSION,
    SERVER_ANSWER_KEY,
    disconnect_extension,
)
from app.errors import body_timeout, error_body
from app.request_ids import new_request_id, request_id_of
from app.settings import Settings

log = logging.getLogger("aeserve")


def _refusal(status: int, reason: bytes, code: str, message: str, request_id: str,
             headers: list[tuple[bytes, bytes]]) -> bytes:
    """The bytes of an answer the protocol writes itself: the service's JSON error, the server's
    default headers (``date``, ``server``) and the request's ``x-request-id``."""
    body = json.dumps(error_body(code, message)).encode()
    lines = [b"HTTP/1.1 %d %s" % (status, reason), *(name + b": " + value for name, value in headers),
             b"content-type: application/json", b"content-length: %d" % len(body),
             b"x-request-id: " + request_id.encode("ascii"), b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@functools.cache
def _limits() -> tuple[int, float, float]:
    """This process's limits, from the environment (workers are spawned: classes travel by name)."""
    settings = Settings()
    return settings.max_header_bytes, settings.header_timeout_s, settings.body_timeout_s


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size cap and header and body read timeouts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes, self.header_timeout_s, self.body_timeout_s = _limits()
        self._in_headers = True  # between a request's first byte and its last header
        self._in_body = False  # between a request's last header and the end of its body
        self._draining = False  # shutting down: the request on its way is the connection's last
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            end = data.find(b"\r\n\r\n")  # the headers end in this chunk: count up to there
            self._header_bytes += len(data) if end < 0 else end + 4
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, b"Request Header Fields Too Large", "headers_too_large",
                             f"the request line and headers are over {self.max_header_bytes} "
                             "bytes (AESERVE_MAX_HEADER_BYTES)")
                return
        super().data_received(data)
        if self._in_body and self._body_timer is None and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # the ASGI extension by which a request hears of its client's disconnect without a task
        # waiting on ``receive`` (app.admission.Ticket.watch uses it when present)
        self.scope["extensions"] = {DISCONNECT_EXTENSION: {"callbacks": []}}
        if not self._in_headers:
            self._in_headers = True
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_body()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            extension = disconnect_extension(cycle.scope) or {}
            extension[CLIENT_GONE] = True
            for callback in cast(list[Callable[[], None]], extension.get("callbacks", [])):
                self.loop.call_soon(callback)
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._disarm()
        super().on_headers_complete()
        self._in_body = True  # until on_message_complete, in this read or a later one
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def shutdown(self) -> None:
        """The server's graceful shutdown: with no response in progress, the connection's next
        request is served and then it closes (a quiet one closes at its keep-alive or header
        timeout); a response in progress is the last, as uvicorn has it."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self._draining = True
            return
        super().shutdown()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm_body()
        super().on_message_complete()
        # uvicorn pauses reading while more than 64 KiB of body waits for the app, and resumes only
        # when the app calls ``receive`` again; a request that read its body and now waits on the
        # disconnect extension never does. Read on, so that a client that closes is seen at once
        # (its callbacks stop the work); but not past a pipelined request, which waits unread
        # until the one before it is answered (uvicorn paused for it, and reading on would buffer
        # every request the client pipelines behind it)
        if not self.pipeline:
            self.flow.resume_reading()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _disarm_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        """Answer 408 and close; the request, whose ``receive`` now reports a disconnect, learns
        why from the disconnect extension and ends as a 408 too (app/uploads.py)."""
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        cycle = self.cycle
        extension = None if cycle is None else disconnect_extension(cycle.scope)
        if extension is not None:
            extension[BODY_TIMED_OUT] = True
        if cycle is not None and cycle.response_started:
            self.transport.close()  # an answer is on its way already: only cut the connection
            return
        error = body_timeout(self.body_timeout_s)
        self._refuse(408, b"Request Timeout", error.code, error.message)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP (bad request line, header, Content-Length or
        chunk framing), in the service's JSON error shape instead of plain text."""
        self._refuse(400, b"Bad Request", "bad_request",
                     "malformed HTTP request: the request line, a header, Content-Length or the "
                     "chunked framing is invalid")

    def _timed_out(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing():
            self._refuse(408, b"Request Timeout", "header_timeout",
                         f"the request line and headers did not arrive within "
                         f"{self.header_timeout_s:g} s (AESERVE_HEADER_TIMEOUT_S)")

    def _refuse(self, status: int, reason: bytes, code: str, message: str) -> None:
        """Answer ``status`` and close. A refusal of a request whose body is being read (the app
        has it) carries its id and marks its scope with the status, so that the app, which sees
        a disconnect, counts and traces it so (``SERVER_ANSWER_KEY``); one before a request's
        headers are read gets a fresh id. Either way the line logged names the id."""
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if not self._in_body or cycle is None or cycle.response_complete:
            # no request of the app's: headers too large or too slow, a malformed request line
            request_id, what = new_request_id(), "a request"
        elif cycle.response_started:
            self.transport.close()  # the app's answer is on its way: only cut the connection
            return
        else:
            scope = cast(dict[str, Any], cycle.scope)
            request_id, what = request_id_of(scope), f"{scope['method']} {scope['path']}"
            scope[SERVER_ANSWER_KEY] = status
        log.info("refused %s with %d %s (client %s): %s", what, status, code, _client(self.client),
                 message, extra={"request_id": request_id})
        self.transport.write(_refusal(status, reason, code, message, request_id,
                                      self.server_state.default_headers))
        self.transport.close()


def _client(address: tuple[str, int] | None) -> str:
    return "-" if address is None else f"{address[0]}:{address[1]}"
