"""The real server (``python -m app``): protocol limits on raw sockets, and the SIGTERM drain.

Every wait here is on an event of the server's (a socket that answers and closes, a process that
exits), with a generous timeout that only fails a hung test; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from app.disconnects import CLIENT_GONE, disconnect_extension
from app.protocol import GuardedHttpToolsProtocol
from tests.app.helpers import files, image_bytes
from tests.app.live import LiveServer, running_server, start_server, stop_server

SOCKET_TIMEOUT_S = 60.0  # only a server that never answers reaches it
MAX_HEADER_BYTES = 4096


@pytest.fixture(scope="module")
def limited(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("limits") / "server.log"
    with running_server(
        tiny_checkpoints, log, AESERVE_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        AESERVE_HEADER_TIMEOUT_S="0.5", AESERVE_BODY_TIMEOUT_S="0.5",
    ) as live:
        yield live


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection, then read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
        if data:
            sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split what a connection received into (status, headers, body) answers."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers.get("content-length", len(rest)))
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        raw = rest[length:]
    return out


def error_code(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["message"]
    return str(error["code"])


def test_a_header_line_that_grows_past_the_limit_is_431_json_and_closed(limited: LiveServer) -> None:
    endless = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (2 * MAX_HEADER_BYTES)
    ((status, headers, body),) = responses(exchange(limited.port, endless))  # never completed
    assert status == 431 and headers["content-type"] == "application/json"
    assert headers["connection"] == "close" and error_code(body) == "headers_too_large"
    assert b"AESERVE_MAX_HEADER_BYTES" in body


def test_complete_headers_over_the_limit_in_one_read_are_431(limited: LiveServer) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (2 * MAX_HEADER_BYTES) + b"\r\n\r\n"
    ((status, _, body),) = responses(exchange(limited.port, big))
    assert status == 431 and error_code(body) == "headers_too_large"


@pytest.mark.parametrize("request_bytes", [
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /healthz HTTP/9.9 what\r\n\r\n",
], ids=["content-length", "chunk-size", "request-line"])
def test_bytes_that_are_not_http_are_answered_400_in_json_and_closed(
    limited: LiveServer, request_bytes: bytes
) -> None:
    ((status, headers, body),) = responses(exchange(limited.port, request_bytes))
    assert (status, headers["content-type"], error_code(body)) == (400, "application/json", "bad_request")


def test_headers_within_the_limit_are_served(limited: LiveServer) -> None:
    fine = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Fine: " + b"a" * 1000 + b"\r\nConnection: close\r\n\r\n"
    ((status, _, body),) = responses(exchange(limited.port, fine))
    assert (status, json.loads(body)) == (200, {"status": "ok"})


@pytest.mark.parametrize("sent", [b"", b"GET /heal"], ids=["nothing", "part-of-the-request-line"])
def test_a_request_line_that_never_completes_is_408_and_closed(limited: LiveServer, sent: bytes) -> None:
    ((status, headers, body),) = responses(exchange(limited.port, sent))
    assert status == 408 and headers["connection"] == "close"
    assert error_code(body) == "header_timeout" and b"AESERVE_HEADER_TIMEOUT_S" in body


def test_the_header_timeout_applies_to_each_request_of_a_kept_alive_connection(
    limited: LiveServer,
) -> None:
    first = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    answers = responses(exchange(limited.port, first + b"GET /hea"))
    assert [a[0] for a in answers] == [200, 408]
    assert error_code(answers[1][2]) == "header_timeout"


def test_a_body_that_stalls_is_408_body_timeout(limited: LiveServer) -> None:
    head = (b"POST /v1/models/mnist-dae/denoise HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000\r\n\r\n")
    ((status, headers, body),) = responses(exchange(limited.port, head + b"\x89PNG\r\n"))
    assert status == 408 and headers["connection"] == "close"
    assert error_code(body) == "body_timeout" and b"AESERVE_BODY_TIMEOUT_S" in body
    # the request ended as that 408 in the app too: counted under it, not as a disconnect
    metrics = httpx.get(f"{limited.url}/metrics", timeout=SOCKET_TIMEOUT_S).text
    assert any(line.startswith("aeserve_requests_total{") and 'status="408"' in line
               and "/denoise" in line and not line.endswith(" 0.0")
               for line in metrics.splitlines())


def test_a_websocket_handshake_is_denied_404_in_json_by_the_real_server(limited: LiveServer) -> None:
    url = f"ws://127.0.0.1:{limited.port}/v1/models/mnist-dae/denoise"
    with pytest.raises(InvalidStatus) as denied:
        connect(url, proxy=None, open_timeout=SOCKET_TIMEOUT_S).close()
    answer = denied.value.response
    assert answer.status_code == 404 and answer.headers["content-type"] == "application/json"
    assert error_code(answer.body or b"") == "not_found" and b"WebSocket" in (answer.body or b"")
    # a refusal is the service working, not an error: nothing at ERROR in the log (uvicorn's
    # websockets-sansio protocol logs one for every denial response; the service runs wsproto)
    assert httpx.get(f"{limited.url}/healthz", timeout=SOCKET_TIMEOUT_S).status_code == 200
    assert "without completing handshake" not in limited.output()


# ---- a client that goes away -------------------------------------------------------------------
def metric_lines(url: str, prefix: str) -> list[str]:
    text = httpx.get(f"{url}/metrics", timeout=SOCKET_TIMEOUT_S).text
    return [line for line in text.splitlines() if line.startswith(prefix) and not line.endswith(" 0.0")]


class Transport(asyncio.Transport):
    """What the protocol writes, and whether it reads: the socket side of a connection."""

    def __init__(self) -> None:
        super().__init__()
        self.reading, self.closing, self.written = True, False, b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 8000) if name in ("sockname", "peername") else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


@pytest.mark.parametrize("pipelined", [False, True], ids=["alone", "a-request-pipelined-behind"])
def test_the_server_reads_on_after_a_large_body_so_that_it_sees_the_client_close(
    pipelined: bool,
) -> None:
    """uvicorn stops reading while over 64 KiB of body waits for the app and reads on only when
    the app calls ``receive`` again; the body's last part arriving while the app waits pauses the
    connection, and a request that has its body never calls ``receive`` again. The server reads on
    once the body is whole, or it would never hear that client close."""

    async def scenario() -> tuple[bool, bool]:
        started, body_read, work = asyncio.Event(), asyncio.Event(), asyncio.Event()
        scopes: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scopes.append(scope)
            started.set()
            while (await receive()).get("more_body"):
                pass
            body_read.set()
            await work.wait()  # the model's work, for as long as the client stays

        config = uvicorn.Config(app, http=GuardedHttpToolsProtocol, log_level="critical")
        config.load()
        protocol = GuardedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        transport = Transport()
        protocol.connection_made(transport)
        body = b"x" * (1 << 20)
        protocol.data_received(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                               % (len(body), body[:1000]))
        await started.wait()  # the app reads its body, and waits for more
        protocol.data_received(body[1000:])  # the rest, in one read: over 64 KiB
        await body_read.wait()
        reading = transport.reading
        if pipelined:  # a request behind it waits unread: reading on would buffer every such one
            protocol.data_received(b"GET /y HTTP/1.1\r\nHost: t\r\n\r\n")
            reading = transport.reading
        protocol.connection_lost(None)  # what reading on lets the server see
        work.set()
        return reading, bool((disconnect_extension(scopes[0]) or {}).get(CLIENT_GONE))

    reading, gone = asyncio.run(scenario())
    assert reading == (not pipelined)
    assert gone or pipelined


def test_a_client_that_closes_after_a_large_upload_stops_its_running_job(
    tiny_photo_checkpoint: Path, tmp_path: Path
) -> None:
    """A body over uvicorn's 64 KiB read buffer, sent without ``Expect: 100-continue`` (a browser's
    way): the server paused reading for it, and must read on to see the client close."""
    png = image_bytes((900, 900), "RGB")  # noise does not compress: 2.4 MB, a minute of work here
    body = (b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--b--\r\n")
    head = ("POST /v1/models/photo-denoiser/denoise HTTP/1.1\r\nHost: t\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n\r\n")
    # at debug the server logs each admission: the body read, the job's work reserved
    with running_server(tiny_photo_checkpoint, tmp_path / "server.log",
                        AESERVE_LOG_LEVEL="debug") as live:
        with socket.create_connection(("127.0.0.1", live.port), timeout=SOCKET_TIMEOUT_S) as sock:
            sock.sendall(head.encode() + body)
            assert live.wait_for("photo-denoiser admitted"), live.output()[-3000:]
        # the client is gone: the job stops at its next tile, counted as a disconnect (499) and
        # logged once counted
        assert live.wait_for("client went away: POST /v1/models/photo-denoiser/denoise"), (
            live.output()[-3000:])
        answered = metric_lines(live.url, 'aeserve_requests_total{model="photo-denoiser"')
        assert ['status="499"' in line for line in answered] == [True], answered
        assert metric_lines(live.url, 'aeserve_requests_cancelled_total{model="photo-denoiser"}')


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


def test_head_on_a_get_route_is_answered_by_the_real_server(limited: LiveServer) -> None:
    with httpx.Client(base_url=limited.url, timeout=SOCKET_TIMEOUT_S) as http:  # one connection
        got = http.get("/v1/models")
        head = http.head("/v1/models")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        assert http.get("/healthz").json() == {"status": "ok"}  # the connection goes on


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
