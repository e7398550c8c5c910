"""A real ``python -m app`` process on a free port, for the tests that need the real server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


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


@dataclass
class LiveServer:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(checkpoints: Path, log: Path, command: tuple[str, ...] = ("-m", "app"),
                 **settings: str) -> LiveServer:
    """Start ``python -m app`` (or ``python *command``) with ``settings`` (``AESERVE_*`` names)
    and wait until it is ready."""
    port = free_port()
    env = server_env(checkpoints, port, **settings)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    server = LiveServer(proc, f"http://127.0.0.1:{port}", port, log)
    wait_until_ready(proc, f"{server.url}/readyz", lambda: server.output()[-3000:])
    return server


def wait_until_ready(proc: subprocess.Popen[bytes], url: str, output: Callable[[], str]) -> None:
    """Until ``url`` answers 200; the test fails, with ``output()``, if ``proc`` exits first or
    takes over ``START_TIMEOUT_S``."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert proc.poll() is None, f"exited: {output()}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} not ready within {START_TIMEOUT_S:g} s"
        time.sleep(0.2)  # polling a starting process: no event to wait on


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


def stop_server(server: LiveServer, timeout_s: float = 60.0) -> int:
    """SIGTERM, then wait for the exit; killed (and the test failed) if it does not come."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout=timeout_s)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=30)


@contextmanager
def running_server(checkpoints: Path, log: Path, **settings: str) -> Iterator[LiveServer]:
    """A started server, stopped (SIGTERM, then killed if need be) when the block ends."""
    server = start_server(checkpoints, log, **settings)
    try:
        yield server
    finally:
        code = stop_server(server)
        assert code in (0, -signal.SIGTERM), server.output()[-3000:]
