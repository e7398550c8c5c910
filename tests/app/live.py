"""A real ``python -m app`` process on a free port, for the tests that need the real server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0  # only a hung start waits this long
WAIT_TIMEOUT_S = 120.0  # for a line of the server's log (workers replaced); only a hung test waits so long
READ_REST_S = 5.0  # for what an exited process wrote last
# what uvicorn logs (at info) once the app has started and it listens, in either order: one process
# binds its socket after the app starts, a supervisor of several workers before it starts them
READY_LINES = ("Application startup complete", "Uvicorn running on")
LISTENING = re.compile(r"Uvicorn running on http://\S+:(\d+) ")  # the port it listens on
SAYS_READY = ("info", "debug", "trace")
# the protocol limits of ``limited_server`` (tests/app/conftest.py): small, and short timeouts
LIMITED_MAX_HEADER_BYTES = 4096
LIMITED = {"AESERVE_MAX_HEADER_BYTES": str(LIMITED_MAX_HEADER_BYTES),
           "AESERVE_HEADER_TIMEOUT_S": "0.5", "AESERVE_BODY_TIMEOUT_S": "0.5"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(checkpoints: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a server: this one's, less any AESERVE_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_")}
    env.update({
        "AESERVE_CHECKPOINT_DIR": str(checkpoints),
        "AESERVE_PORT": str(port),
        "AESERVE_LOG_LEVEL": "warning",
        "AESERVE_TORCH_THREADS": "1",
        **extra,
    })
    return env


class Output:
    """A process's stdout and stderr, read on a thread as they come: copied to ``log``, kept here,
    and waited on. Every wait wakes on a new line or the process's exit, never on a timer."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        assert proc.stdout is not None, "start the process with stdout=subprocess.PIPE"
        self.proc = proc
        self._lines: list[str] = []
        self._exited = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(proc.stdout, log), daemon=True)
        self._reader.start()
        threading.Thread(target=self._watch_exit, daemon=True).start()

    def _read(self, stream: IO[bytes], log: Path) -> None:
        with stream, log.open("wb") as copy:
            for line in stream:  # ends when every process writing to it has closed it
                copy.write(line)
                copy.flush()
                with self._changed:
                    self._lines.append(line.decode(errors="replace"))
                    self._changed.notify_all()

    def _watch_exit(self) -> None:
        # WNOWAIT: the exit is seen and the process left for Popen to reap (poll, wait)
        with suppress(ChildProcessError):  # reaped already: it has exited all the same
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        with self._changed:
            self._exited = True
            self._changed.notify_all()

    def text(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def read_rest(self) -> None:
        """Once the process has exited: until what it wrote last is read (the reader gets to the
        end of its output a little after the exit, on its own thread)."""
        self._reader.join(READ_REST_S)

    def wait_for(self, *lines: str, count: int = 1, timeout_s: float = WAIT_TIMEOUT_S) -> bool:
        """Until each of ``lines`` is in the output ``count`` times (True), or the process has
        exited or ``timeout_s`` passed without it (False)."""
        def seen() -> bool:
            return all(sum(text.count(line) for text in self._lines) >= count for line in lines)

        with self._changed:
            self._changed.wait_for(lambda: seen() or self._exited, timeout_s)
            found = seen()
        if not found and self._exited:
            self.read_rest()  # the rest of what it wrote, for the failure's message
        return found


@dataclass
class LiveServer:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path
    watched: Output

    def output(self) -> str:
        return self.watched.text()

    def wait_for(self, line: str, count: int = 1, timeout_s: float = WAIT_TIMEOUT_S) -> bool:
        """Until ``line`` is in the server's output ``count`` times; False if it exits first or
        ``timeout_s`` passes (only a hung test waits that long)."""
        return self.watched.wait_for(line, count=count, timeout_s=timeout_s)


def start_server(checkpoints: Path, log: Path, command: tuple[str, ...] = ("-m", "app"),
                 **settings: str) -> LiveServer:
    """Start ``python -m app`` (or ``python *command``) with ``settings`` (``AESERVE_*`` names)
    and wait until it is ready: uvicorn has said that the app has started (models loaded and
    warm) and that it listens, and ``/readyz`` then answers 200. The test fails, with the
    server's output, if it exits first or is not ready within ``START_TIMEOUT_S``.

    Unless ``settings`` name an ``AESERVE_PORT``, the server binds port 0, the system's pick, and
    the port is read from its log: a port picked here and bound there later could be taken in
    between (by another process of the machine's, such as a second test run beside this one)."""
    settings = {"AESERVE_LOG_LEVEL": "info", "AESERVE_PORT": "0", **settings}  # info: it says it is ready
    level = settings["AESERVE_LOG_LEVEL"].lower()
    if level not in SAYS_READY:
        raise ValueError(f"AESERVE_LOG_LEVEL={level}: uvicorn says it is ready at info; use one "
                         f"of {', '.join(SAYS_READY)}")
    env = server_env(checkpoints, int(settings["AESERVE_PORT"]), **settings)
    proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watched = Output(proc, log)
    ready = watched.wait_for(*READY_LINES, timeout_s=START_TIMEOUT_S)
    listening = LISTENING.search(watched.text())
    port = int(listening[1]) if listening else 0
    server = LiveServer(proc, f"http://127.0.0.1:{port}", port, log, watched)
    if not ready:
        code = proc.poll()
        stop_server(server)
        why = f"exited ({code})" if code is not None else f"was not ready within {START_TIMEOUT_S:g} s"
        raise AssertionError(f"the server {why}: {server.output()[-3000:]}")
    answer = httpx.get(f"{server.url}/readyz", timeout=START_TIMEOUT_S)
    assert answer.status_code == 200, f"ready by its log, not by /readyz: {answer.text}"
    return server


def wire(request: httpx.Request) -> bytes:
    """``request`` as an HTTP/1.1 client sends it, for a raw socket that the test closes itself."""
    lines = [f"{request.method} {request.url.raw_path.decode('ascii')} HTTP/1.1",
             *(f"{name}: {value}" for name, value in request.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.read()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer from ``sock``: status, headers (names in lower case) and body (by its
    Content-Length)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed inside an answer"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split what a connection received until it closed into (status, headers, body) answers."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers.get("content-length", len(rest)))
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


def stop_server(server: LiveServer, timeout_s: float = 60.0) -> int:
    """SIGTERM, then wait for the exit; killed (and the test failed) if it does not come. Once it
    returns, ``server.output()`` holds all that the server wrote."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout=timeout_s)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=30)
        server.watched.read_rest()


@contextmanager
def running_server(checkpoints: Path, log: Path, **settings: str) -> Iterator[LiveServer]:
    """A started server, stopped (SIGTERM, then killed if need be) when the block ends."""
    server = start_server(checkpoints, log, **settings)
    try:
        yield server
    finally:
        code = stop_server(server)
        assert code in (0, -signal.SIGTERM), server.output()[-3000:]
