"""The answers the protocol writes itself (431, 408, 400 for bytes that are not HTTP) carry an
``X-Request-ID``, ``date`` and ``server`` like every other answer, and name that id in the line
they log; a request the app had when the server refused its body (a malformed chunk, a body too
slow) counts and logs under the status answered, not as a client that went away (499)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.live import LiveServer, read_answer, running_server

SOCKET_TIMEOUT_S = 60.0  # only a server that never answers reaches it
MAX_HEADER_BYTES = 4096
ROUTE = "/v1/models/{name}/denoise"


@pytest.fixture(scope="module")
def server(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    log = tmp_path_factory.mktemp("refusals") / "server.log"
    with running_server(tiny_checkpoints, log, AESERVE_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
                        AESERVE_BODY_TIMEOUT_S="0.5") as live:
        yield live


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
