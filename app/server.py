"""The HTTP server: uvicorn with the protocol limits and the SIGTERM drain the service needs.

One small extension through uvicorn's public ``http`` option (the protocol class it runs):

- ``GuardedHttpToolsProtocol``: the request line and headers must arrive within
  ``AESERVE_HEADER_TIMEOUT_S`` (408 and close otherwise: a client that dribbles header bytes
  cannot hold a file descriptor for ever) and be at most ``AESERVE_MAX_HEADER_BYTES`` (431 and
  close); a body must arrive within ``AESERVE_BODY_TIMEOUT_S`` of its first part (408 and close;
  a body that comes whole with its headers, the usual upload, never starts the timer). uvicorn's
  httptools protocol has none of these limits; its h11 protocol caps the size but has no
  timeout, and costs throughput (docs/serving.md, "Protocol limits"). It also offers each request
  the ``aeserve.disconnect`` ASGI extension: callbacks run when the client goes away, so a request
  learns of it without a task per request waiting on ``receive``.

On SIGTERM the app drains (``app.lifecycle.Drain``) while uvicorn stops accepting connections and
waits for the requests it has; ``timeout_graceful_shutdown`` bounds that wait a few seconds past the
drain timeout, whatever is in flight. uvicorn closes at once every connection that has no response
in progress, which loses a request already on its way: from a client that has just connected, one
whose headers are half read, or one that sends on its kept-alive connection at that instant. The
protocol keeps such a connection open instead: its next request is served and answered with
``Connection: close``, and a connection that stays quiet closes at its keep-alive timeout (5 s) or,
before a first request, at the header timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import HANDLED_SIGNALS
from uvicorn.supervisors import Multiprocess, multiprocess

from app.errors import body_timeout, error_body
from app.lifecycle import BODY_TIMED_OUT, CLIENT_GONE, DISCONNECT_EXTENSION, disconnect_extension
from app.observability import SERVER_ANSWER_KEY, new_request_id, request_id_of
from app.settings import Settings
from app.stopping import STOP_SIGNALS, fail_start, stop_while_starting

EXIT_MARGIN_S = 4.0  # the process exits at most this long after the drain timeout
SUPERVISOR_ENV = "_AESERVE_SUPERVISOR_PID"  # set by ``serve`` for its workers; not a setting
log = logging.getLogger("aeserve")


_alone = False  # ``serve`` runs the service in this one process
_failed = False  # a batch worker died, a failure: ``serve`` ends with status 1
_starting = False  # this process's ``Server`` runs and does not serve yet


def exits_on_a_dead_batch_worker() -> bool:
    """Whether this process ends when a model's batch worker stops by a bug (a model that would
    never answer here again): a worker of ``serve``'s supervisor, which starts a fresh one, or
    ``serve``'s one process, which its restart policy or orchestrator starts again. Not a server
    started another way (``uvicorn app.factory:build --factory``), which stays up and fails
    ``/healthz``."""
    return _alone or supervisor_pid() is not None


def exit_for_a_fresh_process(model: str, failure: bool = True) -> None:
    """Drain and exit (SIGTERM to this process), the exit status 1 when this is ``serve``'s only
    process and the death is a ``failure``: not one while the service was stopping anyway with
    every request answered, which loses nothing (``Registry._dead``). Before this process serves
    (another model loading) there is nothing to drain: the start fails, at once, with status 1."""
    if _starting:
        fail_start(f"the batch worker of {model} died while the models load (its error is above)")
    global _failed
    _failed = _failed or failure
    if not failure:
        log.warning("the batch worker of %s stopped while the service stops, with no request "
                    "left to answer: nothing is lost", model)
    else:
        then = ("the service drains and exits with status 1, to be started again" if _alone
                else "this worker exits, and the supervisor starts a fresh one")
        log.critical("the batch worker of %s stopped: %s", model, then)
    signal.raise_signal(signal.SIGTERM)


def supervisor_pid() -> int | None:
    """The pid of the ``serve`` supervisor whose worker this process is, or None: one process,
    or a server started some other way (``uvicorn app.factory:build --factory``), whose parent
    is not ours to signal."""
    pid = os.environ.get(SUPERVISOR_ENV)
    return int(pid) if pid is not None and pid == str(os.getppid()) else None


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
        # waiting on ``receive`` (app.lifecycle.Ticket.watch uses it when present)
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


def exit_status() -> int:
    """``serve``'s exit status: 1 when a batch worker's death was a failure, else 0."""
    return 1 if _failed else 0


class Server(uvicorn.Server):
    """uvicorn's server for ``serve``'s one process and for each of its workers. A stop signal
    before it serves (the lifespan loading and warming the models, the port not yet listening)
    ends the process at once (``stop_while_starting``); from the moment it serves, the signal
    drains. One handler decides both by the server's own ``started`` flag, so no signal falls
    between two handlers. Unlike uvicorn's, the signal is not raised again once the server is
    done (which would end the process by the handler found before, or the signal's default
    action): ``serve`` returns the exit status. The handler stays in place: a further signal while
    the process ends changes nothing."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.started:
            stop_while_starting(sig, frame)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self.handle_exit)
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        global _starting
        _starting = True
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        global _starting
        await super().startup(sockets)
        _starting = not self.started
        # the socket is ``bind``'s: uvicorn, which did not bind it, says nothing; nor does a
        # worker of several, whose supervisor has said it
        if sockets is not None and _alone:
            say_running(sockets[0])


class _Worker(multiprocess.Process):
    """A worker process of uvicorn's supervisor that runs ``Server``; uvicorn's runs its own
    server, which lets a stop signal wait until the models are loaded and warm."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(config=self.config)
        return self._server

    def start(self) -> None:
        super().start()
        # the worker has its own copy of its end of the health check's pipe now. With the
        # supervisor's closed, a worker that ends while a check waits for its answer (stopped
        # while it loads) is seen gone at once, not after the check's whole timeout
        self.child_conn.close()


@contextlib.contextmanager
def _workers_run_server() -> Iterator[None]:
    """uvicorn's supervisor starts its workers (at first, in place of one that died, on SIGHUP)
    as its module's ``Process``, which has no option for the server it runs: ``_Worker`` is that
    ``Process`` while the supervisor runs."""
    uvicorns = multiprocess.Process
    multiprocess.Process = _Worker  # type: ignore[misc]
    try:
        yield
    finally:
        multiprocess.Process = uvicorns  # type: ignore[misc]


def _supervisor_status(workers: list[multiprocess.Process]) -> int:
    """A supervisor whose workers all ended as stopped before serving (128 + the stop signal's
    number; the signal's default action, before a worker's handler was in place, counts the same)
    served nothing either: it ends the same way. Otherwise ``exit_status``."""
    stopped = {128 + sig for sig in STOP_SIGNALS}
    codes = {128 - code if code < 0 else code for code in (w.exitcode for w in workers)
             if code is not None}  # all of them: the supervisor has joined them
    if len(codes) == 1 and codes <= stopped:
        return codes.pop()
    return exit_status()


def say_running(sock: socket.socket) -> None:
    """uvicorn's line for a server that listens (which it logs only for a socket it bound)."""
    host, port = sock.getsockname()[:2]
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)",
        f"[{host}]" if sock.family == socket.AF_INET6 else host, port)


def bind(settings: Settings) -> socket.socket:
    """The service's socket, bound to ``AESERVE_HOST:AESERVE_PORT`` before anything loads, so that
    an address in use or not this host's stops the start at once (``OSError``). It listens only
    once the service serves: until then a connection is refused."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's own
        sock.bind((settings.host, settings.port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)  # spawned workers get it
    return sock


def serve(settings: Settings, log_config: dict[str, Any], sock: socket.socket) -> int:
    """Run the service (``settings.workers`` processes) on ``sock`` (``bind``) until a stop signal
    has drained it; the exit status: 1 when a batch worker of this one process died, a failure,
    else 0. A stop signal before it serves ends the process with 128 + the signal's number
    (``Server``); a worker of several too, and the supervisor when none of them served."""
    global _alone
    _alone = settings.workers == 1
    if settings.workers > 1:  # the workers are spawned: they inherit it and can find their supervisor
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
    else:  # one process: nothing inherited may name a supervisor
        os.environ.pop(SUPERVISOR_ENV, None)
    options: dict[str, Any] = dict(
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        # a worker is ready once its models are loaded and warm, which takes longer than uvicorn's
        # default 5 s; past this, a replacement on reload is killed and the old worker kept
        timeout_worker_healthcheck=settings.worker_start_timeout_s,
        http=GuardedHttpToolsProtocol,
        # the service has no WebSocket endpoints and refuses every handshake (app/websockets.py);
        # wsproto answers that refusal as sent, where websockets-sansio, uvicorn's default, logs an
        # ERROR for each one and adds headers of its own to the answer
        ws="wsproto",
        log_level=settings.log_level,
        log_config=log_config,
        # uvicorn logs each request at info; above that level it would still format every line
        access_log=settings.log_level in ("info", "debug", "trace"),
        timeout_graceful_shutdown=int(settings.drain_timeout_s + EXIT_MARGIN_S),
    )
    config = uvicorn.Config("app.factory:build", **options)
    if settings.workers > 1:  # uvicorn's supervisor, which handles the signals of its own process
        say_running(sock)  # in the supervisor, as uvicorn does: its workers say nothing
        supervisor = Multiprocess(config, sockets=[sock])
        with _workers_run_server():
            supervisor.run()
        return _supervisor_status(supervisor.processes)
    else:
        Server(config).run(sockets=[sock])
    return exit_status()
