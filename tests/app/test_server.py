"""The real server (``python -m app``): the WebSocket protocol and HEAD as uvicorn runs them, the
SIGTERM drain, and the exit when a batch worker dies. (Its protocol limits: test_protocol.py.)

Every wait here is on an event of the server's (a socket that answers and closes, a process that
exits), with a generous timeout that only fails a hung test; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app import server as app_server
from tests.app.helpers import error_code, files, image_bytes
from tests.app.live import LiveServer, responses, start_server, stop_server

SOCKET_TIMEOUT_S = 60.0  # only a server that never answers reaches it


def test_a_websocket_handshake_is_denied_404_in_json_by_the_real_server(
    limited_server: LiveServer,
) -> None:
    url = f"ws://127.0.0.1:{limited_server.port}/v1/models/mnist-dae/denoise"
    with pytest.raises(InvalidStatus) as denied:
        connect(url, proxy=None, open_timeout=SOCKET_TIMEOUT_S).close()
    answer = denied.value.response
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/json"
    assert error_code(answer.body or b"") == "not_found" and b"WebSocket" in (answer.body or b"")
    # a refusal is the service working, not an error: nothing at ERROR in the log (uvicorn's
    # websockets-sansio protocol logs one for every denial response; the service runs wsproto)
    assert httpx.get(f"{limited_server.url}/healthz", timeout=SOCKET_TIMEOUT_S).status_code == 200
    assert "without completing handshake" not in limited_server.output()


def test_head_on_a_get_route_is_answered_by_the_real_server(limited_server: LiveServer) -> None:
    with httpx.Client(base_url=limited_server.url, timeout=SOCKET_TIMEOUT_S) as http:  # one connection
        got = http.get("/v1/models")
        head = http.head("/v1/models")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert http.get("/healthz").json() == {"status": "ok"}  # the connection goes on


# ---- SIGTERM -----------------------------------------------------------------------------------
@pytest.mark.parametrize("before", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"],
                         ids=["new-connection", "kept-alive-connection"])
def test_a_request_on_its_way_when_sigterm_comes_is_served_and_its_connection_closed(
    tiny_checkpoints: Path, tmp_path: Path, before: bytes
) -> None:
    server = start_server(tiny_checkpoints, tmp_path / "server.log", AESERVE_LOG_LEVEL="info")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT_S) as sock:
            request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            if before:  # a request answered: the connection is kept alive, idle at the SIGTERM
                sock.sendall(before)
                head = b""
                while not head.endswith(b"}"):  # the small JSON answer, whole
                    head += sock.recv(65536)
            else:  # a new connection with half its first request's headers sent
                sock.sendall(request)
                request = b""
            # accepted: the listen queue is first come, first served, and a later one is answered
            assert httpx.get(f"{server.url}/healthz", timeout=SOCKET_TIMEOUT_S).status_code == 200
            server.proc.send_signal(signal.SIGTERM)
            # the connections were told in the same step
            assert server.wait_for("Shutting down"), server.output()[-3000:]
            sock.sendall(request + b"Accept: */*\r\n\r\n")  # (the rest): uvicorn alone would have closed
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        ((status, headers, body),) = responses(b"".join(chunks))
        assert (status, headers["connection"], json.loads(body)) == (200, "close", {"status": "ok"})
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        stop_server(server)


SCORE_IMAGES = 10  # k=1000 on 10 digits: 7.85 of the default 8 megapixel-equivalents; seconds
IN_FLIGHT = 4  # four of them fill the default queue budget of 32


def test_sigterm_answers_every_request_in_flight_and_exits(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    server = start_server(tiny_checkpoints, tmp_path / "server.log", AESERVE_DRAIN_TIMEOUT_S="2",
                          AESERVE_LOG_LEVEL="debug")  # which logs each admission
    try:
        outcomes: list[Any] = [None] * IN_FLIGHT
        upload = files(*[image_bytes(seed=i) for i in range(SCORE_IMAGES)])

        def score(i: int) -> None:
            try:
                outcomes[i] = httpx.post(f"{server.url}/v1/models/mnist-vae/score",
                                         params={"k": 1000, "seed": i}, files=upload, timeout=120)
            except httpx.HTTPError as exc:  # a lost request: the test fails on it below
                outcomes[i] = exc

        threads = [threading.Thread(target=score, args=(i,)) for i in range(IN_FLIGHT)]
        with httpx.Client(base_url=server.url, timeout=30) as kept_alive:
            assert kept_alive.get("/readyz").status_code == 200
            for t in threads:
                t.start()
            # every score admitted: its work reserved, its body read
            assert server.wait_for("mnist-vae admitted", count=IN_FLIGHT), server.output()[-3000:]
            assert all(o is None for o in outcomes), f"answered before SIGTERM: {outcomes}"
            server.proc.send_signal(signal.SIGTERM)
            try:
                ready = kept_alive.get("/readyz")
            except httpx.TransportError:
                ready = None  # the server already closed its idle connections: also not ready
        for t in threads:
            t.join(180)
        code = server.proc.wait(timeout=120)
    finally:
        stop_server(server)
    log = server.output()
    assert code in (0, -signal.SIGTERM), log[-3000:]
    assert ready is None or (ready.status_code, ready.json()["error"]["code"]) == (503, "not_ready")
    assert "draining" in log and "Traceback" not in log
    for outcome in outcomes:
        assert isinstance(outcome, httpx.Response), f"lost: {outcome!r}"
        if outcome.status_code == 200:
            assert len(outcome.json()["results"]) == SCORE_IMAGES
            continue
        assert outcome.status_code == 503, outcome.text
        assert outcome.headers["content-type"] == "application/json"
        assert outcome.json()["error"]["code"] in ("shutting_down", "timeout")
        assert int(outcome.headers["retry-after"]) >= 1


# ``python -m app`` with a bug in every model's batch worker: the first batch it takes kills it (a
# lone one-row request runs inline, and sample and score run alone: two rows to decode do not)
BROKEN_WORKER = """
import sys
from app import batching
def broken(self, *args):
    raise RuntimeError("a bug in the batch worker")
batching.Batcher._take = broken
from app.__main__ import main
sys.exit(main())
"""


def test_one_process_whose_batch_worker_dies_drains_and_exits_1_to_be_started_again(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    """A model that can never answer again ends the process, so that a restart policy (Docker's
    restarts a process that exits, not one that is unhealthy) starts a fresh one."""
    server = start_server(tiny_checkpoints, tmp_path / "server.log", ("-c", BROKEN_WORKER))
    try:
        answer = httpx.post(f"{server.url}/v1/models/mnist-vae/decode", json={"z": [[0.0] * 32] * 2},
                            timeout=60)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "unavailable"
        assert server.proc.wait(timeout=SOCKET_TIMEOUT_S) == 1
    finally:
        stop_server(server)
    assert ("the batch worker of mnist-vae stopped: the service drains and exits with status 1, "
            "to be started again") in server.output()


# ---- the server embedded ----------------------------------------------------------------------
async def nothing(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that is never called: the server below stops before any request."""


def test_a_server_run_outside_the_main_thread_starts_and_stops_without_signal_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As uvicorn's own server: Python sets signal handlers only from the main thread (elsewhere
    it raises ``ValueError``), so a program that runs the server in a thread of its own gets a
    server without them, its signals left to it."""
    monkeypatch.setattr(app_server, "_running", None)  # which the run sets
    embedded = app_server.Server(uvicorn.Config(nothing, lifespan="off", log_level="warning"))
    embedded.should_exit = True  # started, then stopped at once: no main loop to wait for
    failures: list[BaseException] = []

    def run(sock: socket.socket) -> None:
        try:
            embedded.run(sockets=[sock])
        except BaseException as exc:  # the test fails on it below
            failures.append(exc)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=run, args=(sock,))
    thread.start()
    thread.join(SOCKET_TIMEOUT_S)
    sock.close()  # (the server's shutdown closes it too)
    assert not thread.is_alive() and failures == [] and embedded.started
    assert signal.getsignal(signal.SIGTERM) != embedded.handle_exit
