"""The HTTP server: uvicorn with the protocol limits (``app.protocol``) and the SIGTERM drain the
service needs.

On SIGTERM the app drains (``app.drain.Drain``) while uvicorn stops accepting connections and
waits for the requests it has; ``timeout_graceful_shutdown`` bounds that wait a few seconds past the
drain timeout, whatever is in flight. uvicorn closes at once every connection that has no response
in progress, which loses a request already on its way: from a client that has just connected, one
whose headers are half read, or one that sends on its kept-alive connection at that instant. The
protocol keeps such a connection open instead: its next request is served and answered with
``Connection: close``, and a connection that stays quiet closes at its keep-alive timeout (5 s) or,
before a first request, at the header timeout.

What is uvicorn's (0.54) is configured through ``uvicorn.Config``'s options where it has one: the
protocol class (``http=``, ``app.protocol``), ``ws``, ``timeout_graceful_shutdown``,
``timeout_worker_healthcheck``. The rest has no option or hook, and is overridden here:

- ``Server.handle_exit``: a stop signal before the server serves ends the process at once; uvicorn
  only sets ``should_exit``, which nothing reads while the lifespan loads the models.
- ``Server.capture_signals``: uvicorn's restores the handlers found before and raises the signal
  again once the server is done, which would end the process with the signal's status; ``serve``
  returns its own exit status instead.
- ``Server.serve``: records the running server (``_running``) for ``exit_for_a_fresh_process``,
  which needs it from the lifespan's start, before ``startup`` returns.
- ``Server.startup``: says where the server listens, which uvicorn logs only for a socket it bound
  itself (``bind`` binds before the models load, so that an address in use fails at once).
- ``_Worker`` and ``_workers_run_server``: uvicorn's supervisor builds each worker as its module's
  ``Process``, which runs ``uvicorn.Server`` and has no option for another; and its parent keeps
  the worker's end of the health check's pipe open, so a worker that dies is seen only after the
  health check's whole timeout.

``bind`` is not ``Config.bind_socket``, which logs that the server runs before the models load and
exits with uvicorn's status 3 where ``python -m app`` says which address it cannot listen on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.server import HANDLED_SIGNALS
from uvicorn.supervisors import Multiprocess, multiprocess

from app.protocol import GuardedHttpToolsProtocol
from app.settings import Settings
from app.stopping import STOP_SIGNALS, fail_start, stop_while_starting

EXIT_MARGIN_S = 4.0  # the process exits at most this long after the drain timeout
SUPERVISOR_ENV = "_AESERVE_SUPERVISOR_PID"  # set by ``serve`` for its workers; not a setting
log = logging.getLogger("aeserve")


_running: Server | None = None  # the ``Server`` that runs in this process, once it runs


def exits_on_a_dead_batch_worker() -> bool:
    """Whether this process ends when a model's batch worker stops by a bug (a model that would
    never answer here again): a worker of ``serve``'s supervisor, which starts a fresh one, or
    ``serve``'s one process, which its restart policy or orchestrator starts again. Not a server
    started another way (``uvicorn app.factory:build --factory``), which stays up and fails
    ``/healthz``."""
    return (_running is not None and _running.alone) or supervisor_pid() is not None


def exit_for_a_fresh_process(model: str, failure: bool = True) -> None:
    """Drain and exit (SIGTERM to this process), the exit status 1 when this is ``serve``'s only
    process and the death is a ``failure``: not one while the service was stopping anyway with
    every request answered, which loses nothing (``Registry._dead``). Before this process serves
    (another model loading) there is nothing to drain: the start fails, at once, with status 1."""
    server = _running  # None: an app that no ``Server`` runs (driven in this process)
    if server is not None:
        if not server.started:
            fail_start(f"the batch worker of {model} died while the models load (its error is "
                       "above)")
        server.failed = server.failed or failure
    if not failure:
        log.warning("the batch worker of %s stopped while the service stops, with no request "
                    "left to answer: nothing is lost", model)
    else:
        then = ("the service drains and exits with status 1, to be started again"
                if server is not None and server.alone
                else "this worker exits, and the supervisor starts a fresh one")
        log.critical("the batch worker of %s stopped: %s", model, then)
    signal.raise_signal(signal.SIGTERM)


def supervisor_pid() -> int | None:
    """The pid of the ``serve`` supervisor whose worker this process is, or None: one process,
    or a server started some other way (``uvicorn app.factory:build --factory``), whose parent
    is not ours to signal."""
    pid = os.environ.get(SUPERVISOR_ENV)
    return int(pid) if pid is not None and pid == str(os.getppid()) else None


class Server(uvicorn.Server):
    """uvicorn's server for ``serve``'s one process and for each of its workers. A stop signal
    before it serves (the lifespan loading and warming the models, the port not yet listening)
    ends the process at once (``stop_while_starting``); from the moment it serves, the signal
    drains. One handler decides both by the server's own ``started`` flag, so no signal falls
    between two handlers. Unlike uvicorn's, the signal is not raised again once the server is
    done (which would end the process by the handler found before, or the signal's default
    action): ``serve`` returns the exit status. The handler stays in place: a further signal while
    the process ends changes nothing.

    It holds what this process's run of the service says of its end: whether it is ``serve``'s
    one process (``alone``, not a worker of several) and whether a batch worker's death was a
    failure (``failed``), which ``exit_for_a_fresh_process`` records."""

    def __init__(self, config: uvicorn.Config, alone: bool = False) -> None:
        super().__init__(config)
        self.alone = alone
        self.failed = False

    def exit_status(self) -> int:
        """``serve``'s exit status: 1 when a batch worker's death was a failure, else 0."""
        return 1 if self.failed else 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.started:
            stop_while_starting(sig, frame)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # as uvicorn's: only the main thread may set a handler (a server run in another thread,
        # by a program that embeds it, has none)
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED_SIGNALS:
                signal.signal(sig, self.handle_exit)
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        global _running
        _running = self
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # the socket is ``bind``'s: uvicorn, which did not bind it, says nothing; nor does a
        # worker of several, whose supervisor has said it
        if sockets is not None and self.alone:
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
    served nothing either: it ends the same way. Otherwise 0: a worker's batch worker that died is
    the supervisor's to mend, by a fresh worker."""
    stopped = {128 + sig for sig in STOP_SIGNALS}
    codes = {128 - code if code < 0 else code for code in (w.exitcode for w in workers)
             if code is not None}  # all of them: the supervisor has joined them
    if len(codes) == 1 and codes <= stopped:
        return codes.pop()
    return 0


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
    server = Server(config, alone=True)
    server.run(sockets=[sock])
    return server.exit_status()
