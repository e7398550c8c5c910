"""The guarded httptools protocol (``app.protocol``) in the real server, on raw sockets: headers
over ``AESERVE_MAX_HEADER_BYTES`` are 431, a request line or body that does not arrive in time is
408, bytes that are not HTTP are 400, each in the JSON error shape and closed.

The answers the protocol writes itself carry an ``X-Request-ID``, ``date`` and ``server`` like every
other answer, and name that id in the line they log; a request the app had when the server refused
its body (a malformed chunk, a body too slow) counts and logs under the status answered, not as a
client that went away (499). After a large body the server reads on, to see a client that closes.

Every wait here is on an event of the server's (a socket that answers and closes, a line it logs),
with a generous timeout that only fails a hung test; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from app.disconnects import CLIENT_GONE, disconnect_extension
from app.protocol import GuardedHttpToolsProtocol
from tests.app.helpers import error_code, image_bytes
from tests.app.live import LIMITED_MAX_HEADER_BYTES, LiveServer, read_answer, responses, running_server

SOCKET_TIMEOUT_S = 60.0  # only a server that never answers reaches it
ROUTE = "/v1/models/{name}/denoise"


@pytest.fixture
def server(limited_server: LiveServer) -> LiveServer:
    """The real server with small protocol limits, shared: these tests only send it requests."""
    return limited_server


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection, then read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S) as sock:
        if data:
            sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_header_line_that_grows_past_the_limit_is_431_json_and_closed(server: LiveServer) -> None:
    endless = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (2 * LIMITED_MAX_HEADER_BYTES)
    ((status, headers, body),) = responses(exchange(server.port, endless))  # never completed
    assert status == 431 and headers["content-type"] == "application/json"
    assert headers["connection"] == "close" and error_code(body) == "headers_too_large"
    assert b"AESERVE_MAX_HEADER_BYTES" in body


def test_complete_headers_over_the_limit_in_one_read_are_431(server: LiveServer) -> None:
    big = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (2 * LIMITED_MAX_HEADER_BYTES) + b"\r\n\r\n"
    ((status, _, body),) = responses(exchange(server.port, big))
    assert status == 431 and error_code(body) == "headers_too_large"


@pytest.mark.parametrize("request_bytes", [
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /healthz HTTP/9.9 what\r\n\r\n",
], ids=["content-length", "chunk-size", "request-line"])
def test_bytes_that_are_not_http_are_answered_400_in_json_and_closed(
    server: LiveServer, request_bytes: bytes
) -> None:
    ((status, headers, body),) = responses(exchange(server.port, request_bytes))
    assert (status, headers["content-type"], error_code(body)) == (400, "application/json", "bad_request")


def test_headers_within_the_limit_are_served(server: LiveServer) -> None:
    fine = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Fine: " + b"a" * 1000 + b"\r\nConnection: close\r\n\r\n"
    ((status, _, body),) = responses(exchange(server.port, fine))
    assert (status, json.loads(body)) == (200, {"status": "ok"})


@pytest.mark.parametrize("sent", [b"", b"GET /heal"], ids=["nothing", "part-of-the-request-line"])
def test_a_request_line_that_never_completes_is_408_and_closed(server: LiveServer, sent: bytes) -> None:
    ((status, headers, body),) = responses(exchange(server.port, sent))
    assert status == 408 and headers["connection"] == "close"
    assert error_code(body) == "header_timeout" and b"AESERVE_HEADER_TIMEOUT_S" in body


def test_the_header_timeout_applies_to_each_request_of_a_kept_alive_connection(
    server: LiveServer,
) -> None:
    first = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    answers = responses(exchange(server.port, first + b"GET /hea"))
    assert [a[0] for a in answers] == [200, 408]
    assert error_code(answers[1][2]) == "header_timeout"


def test_a_body_that_stalls_is_408_body_timeout(server: LiveServer) -> None:
    head = (b"POST /v1/models/mnist-dae/denoise HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000\r\n\r\n")
    before = requests_counted(server, 408)
    ((status, headers, body),) = responses(exchange(server.port, head + b"\x89PNG\r\n"))
    assert status == 408 and headers["connection"] == "close"
    assert error_code(body) == "body_timeout" and b"AESERVE_BODY_TIMEOUT_S" in body
    # the request ended as that 408 in the app too: counted under it, not as a disconnect. The app
    # hears of the refusal after it went out, and counts it then: each poll is a request, bounded
    for _ in range(600):
        if requests_counted(server, 408) > before:
            break
    assert requests_counted(server, 408) == before + 1


def answer_to(server: LiveServer, data: bytes) -> tuple[int, dict[str, str], dict[str, dict[str, str]]]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(data)
        status, headers, body = read_answer(sock)
        assert sock.recv(1) == b"", "the connection stays open after a refusal"
    return status, headers, json.loads(body)


def requests_counted(server: LiveServer, status: int) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(rf'^aeserve_requests_total{{model="mnist-dae",route="{re.escape(ROUTE)}",'
                      rf'status="{status}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def assert_refusal_logged(server: LiveServer, headers: dict[str, str], code: str) -> None:
    request_id = headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), headers  # a fresh one: no request was read
    assert "date" in headers and "server" in headers, headers
    line = f"[{request_id}] refused "
    assert server.wait_for(line), server.output()[-3000:]
    assert code in next(ln for ln in server.output().splitlines() if line in ln)


def test_headers_over_the_limit_are_431_with_a_request_id_that_the_log_names(server: LiveServer) -> None:
    status, headers, body = answer_to(
        server, b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert status == 431 and body["error"]["code"] == "headers_too_large"
    assert_refusal_logged(server, headers, "headers_too_large")


def test_bytes_that_are_not_http_are_400_with_a_request_id(server: LiveServer) -> None:
    status, headers, body = answer_to(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert_refusal_logged(server, headers, "bad_request")


def refused_upload(server: LiveServer, request_id: str, body: bytes) -> tuple[int, dict[str, str], str]:
    """A chunked upload whose body is ``body``: the status, headers and error code answered."""
    status, headers, error = answer_to(
        server, b"POST /v1/models/mnist-dae/denoise HTTP/1.1\r\nHost: x\r\nX-Request-ID: "
                + request_id.encode() + b"\r\nContent-Type: image/png\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert "date" in headers and "server" in headers, headers
    return status, headers, error["error"]["code"]


def test_a_body_that_stalls_is_408_with_the_request_id(server: LiveServer) -> None:
    status, headers, code = refused_upload(server, "stalled-1", b"ff\r\nabc")  # never whole
    assert (status, code) == (408, "body_timeout")
    assert headers["x-request-id"] == "stalled-1"  # the client's: the one the app logs it under
    assert server.wait_for("[stalled-1] refused POST /v1/models/mnist-dae/denoise with 408"), \
        server.output()[-3000:]


def test_a_malformed_chunk_is_400_counted_and_logged_as_400_not_as_a_client_gone(
        server: LiveServer) -> None:
    before = requests_counted(server, 400), requests_counted(server, 499)
    status, headers, code = refused_upload(server, "malformed-1", b"zz\r\nabc\r\n")  # not hex
    assert (status, code) == (400, "bad_request")
    assert headers["x-request-id"] == "malformed-1"
    assert server.wait_for("[malformed-1] refused POST /v1/models/mnist-dae/denoise with 400")
    # the app's line for the request, written once it has counted it
    assert server.wait_for("[malformed-1] the server answered 400"), server.output()[-3000:]
    assert "[malformed-1] client went away" not in server.output()
    assert (requests_counted(server, 400), requests_counted(server, 499)) == (before[0] + 1,
                                                                               before[1])


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
