"""Size limits: body bytes, pixels (from the header, before decoding), images, n, k, steps."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import assert_error, files, image_bytes, png_claiming
from tests.app.live import LiveServer, read_answer, running_server

URL = "/v1/models/mnist-dae/denoise"


# Apps shared by the tests of one setting: these tests send requests and read the answers, and
# leave nothing behind that another answer depends on (the tests of the room for bodies being read
# start their own, in process; those on the real server below share one).
@pytest.fixture(scope="module")
def body_limited(tiny_checkpoints: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tiny_checkpoints, max_body_bytes=4096))) as client:
        yield client


@pytest.fixture(scope="module")
def json_limited(tiny_checkpoints: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tiny_checkpoints, max_json_bytes=2048))) as client:
        yield client


@pytest.fixture(scope="module")
def count_limited(tiny_checkpoints: Path) -> Iterator[TestClient]:
    """Each count limit low: images, interpolation steps, n and k, each on its own parameter."""
    settings = make_settings(tiny_checkpoints, max_images=2, max_steps=4, max_n=4, max_k=50,
                             default_k=10)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_30000_by_30000_png_header_is_refused_before_decoding(client: TestClient) -> None:
    bomb = png_claiming(30000, 30000)
    assert len(bomb) < 2000
    error = assert_error(client.post(URL, files=files(bomb)), 413, "too_many_pixels")
    assert "30000" in error["message"] or "pixels" in error["message"]


def test_pixel_limit_is_the_setting(app_with: Callable[..., TestClient]) -> None:
    client = app_with(max_pixels=28 * 28)
    assert client.post(URL, files=files(image_bytes())).status_code == 200
    big = image_bytes(size=(29, 28))
    error = assert_error(client.post(URL, params={"resize": "true"}, files=files(big)), 413)
    assert "812" in error["message"] and "784" in error["message"]


def test_body_over_the_limit_is_413_from_content_length(body_limited: TestClient) -> None:
    client = body_limited
    big = image_bytes(size=(28, 28), mode="RGBA") * 4
    response = client.post(URL, content=big, headers={"content-type": "image/png"})
    error = assert_error(response, 413, "payload_too_large")
    assert "4096" in error["message"]


def test_chunked_body_over_the_limit_is_413(body_limited: TestClient) -> None:
    client = body_limited

    def chunks():  # no Content-Length: the limit is counted while the body streams in
        for _ in range(10):
            yield b"x" * 1000

    response = client.post(URL, content=chunks(), headers={"content-type": "image/png"})
    assert_error(response, 413, "payload_too_large")


def test_a_chunked_json_body_over_the_limit_is_413_not_a_parse_error(
    body_limited: TestClient,
) -> None:
    client = body_limited

    def chunks():  # FastAPI reads this body itself, and would turn the refusal into a 400
        for _ in range(10):
            yield b" " * 1000

    response = client.post("/v1/models/mnist-vae/decode", content=chunks(),
                           headers={"content-type": "application/json"})
    assert_error(response, 413, "payload_too_large")


def test_json_bodies_have_their_own_smaller_limit(json_limited: TestClient) -> None:
    client = json_limited
    body = {"z": [[0.123456789] * 32] * 10}  # about 4 KB of JSON
    error = assert_error(client.post("/v1/models/mnist-vae/decode", json=body), 413, "payload_too_large")
    assert "AESERVE_MAX_JSON_BYTES" in error["message"]
    assert client.post("/v1/models/mnist-vae/decode", json={"z": body["z"][:2]}).status_code == 200
    for ctype in ("application/problem+json", "application/vnd.x+json", "text/plain"):
        # FastAPI parses any +json type as JSON: every body but an image upload has the JSON limit
        response = client.post("/v1/models/mnist-vae/decode", content=json.dumps(body),
                               headers={"content-type": ctype})
        assert_error(response, 413, "payload_too_large")
    big_image = image_bytes(size=(28, 28), mode="RGBA")  # over 2 KB: images keep the body limit
    assert len(big_image) > 2048
    response = client.post(URL, params={"resize": "true"}, files=files(big_image))
    assert response.status_code == 200


def test_several_content_types_are_400_not_a_way_round_the_json_limit(
    json_limited: TestClient
) -> None:
    client = json_limited
    body = json.dumps({"z": [[0.123456789] * 32] * 10})  # about 4 KB: over the JSON limit
    for types in (["application/json", "image/png"], ["image/png", "application/json"],
                  ["application/json", "application/json"]):
        headers = [("content-type", t) for t in types]
        for content in (body, json.dumps({"z": [[0.0] * 32]})):  # over the JSON limit, and under
            error = assert_error(client.post("/v1/models/mnist-vae/decode", content=content,
                                             headers=headers), 400, "bad_request")
            assert "2 Content-Type headers" in error["message"]


def test_too_many_images_is_422(count_limited: TestClient) -> None:
    client = count_limited
    response = client.post(URL, files=files(*[image_bytes(seed=i) for i in range(3)]))
    error = assert_error(response, 422, "too_many_images")
    assert "2" in error["message"]


def test_steps_over_the_limit_is_422_before_any_image_is_read(count_limited: TestClient) -> None:
    client = count_limited
    url = "/v1/models/mnist-vae/interpolate"
    two = files(image_bytes(seed=0), image_bytes(seed=1))
    error = assert_error(client.post(url, params={"steps": 5}, files=two), 422, "limit_exceeded")
    assert "AESERVE_MAX_STEPS" in error["message"]
    # the query is checked first: a body that is not even an image gets the same answer
    junk = files(b"not an image", b"nor this")
    assert_error(client.post(url, params={"steps": 5}, files=junk), 422, "limit_exceeded")
    z = {"z": [[0.0] * 32, [1.0] * 32]}
    assert_error(client.post(url, json={**z, "steps": 5}), 422, "limit_exceeded")
    assert client.post(url, params={"steps": 4}, files=two).status_code == 200
    assert client.post(url, json={**z, "steps": 4}).status_code == 200


def test_n_over_the_limit_is_422(count_limited: TestClient) -> None:
    client = count_limited
    response = client.post("/v1/models/mnist-vae/sample", json={"n": 5})
    assert "4" in assert_error(response, 422, "limit_exceeded")["message"]
    response = client.post("/v1/models/mnist-vae/decode", json={"z": [[0.0] * 32] * 5})
    assert_error(response, 422, "limit_exceeded")
    assert client.post("/v1/models/mnist-vae/sample", json={"n": 4}).status_code == 200


def test_k_over_the_limit_is_422(count_limited: TestClient) -> None:
    client = count_limited
    url = "/v1/models/mnist-vae/score"
    error = assert_error(client.post(url, params={"k": 51}, files=files(image_bytes())), 422)
    assert "50" in error["message"]
    assert client.post(url, files=files(image_bytes())).json()["k"] == 10


def test_invalid_query_values_are_422_in_the_error_shape(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-vae/score", params={"k": 0}, files=files(image_bytes()))
    assert "k" in assert_error(response, 422, "invalid_request")["message"]


# ---- body bytes read and held at once (AESERVE_MAX_BODIES_BYTES) -------------------------------
DIGIT_RGB = image_bytes(mode="RGB")  # a 28x28 upload over 1 KiB, the smallest body limit
WAIT_S = 60.0
SOCKET_TIMEOUT_S = 60.0  # only a server that never answers reaches it


def upload_scope(content_length: int | None) -> dict[str, Any]:
    headers = [(b"host", b"testserver"), (b"content-type", b"image/png")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": URL, "raw_path": URL.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80), "state": {},
    }


async def connected() -> dict[str, Any]:
    """What ``receive`` gives after the body while the client stays: nothing, until the request
    stops waiting (the app watches ``receive`` for a disconnect)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def answer(client: TestClient, chunked: bool, receive: Any) -> tuple[int, dict[str, str], bytes]:
    """Call the whole app with ``receive``; its status, headers and body."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = upload_scope(None if chunked else len(DIGIT_RGB))
    await client.app(scope, receive, send)  # type: ignore[arg-type]
    headers = {k.decode().lower(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_that_does_not_fit_beside_those_being_read_is_503_then_served(
    app_with: Callable[..., TestClient], chunked: bool
) -> None:
    """Room for two bodies: two uploads stay half read, a third is refused at once (a declared one
    without reading a byte of it), and once the two are answered it is served."""
    size = len(DIGIT_RGB)
    client = app_with(max_body_bytes=size, max_bodies_bytes=2 * size)

    async def scenario() -> None:
        reading = [asyncio.Event(), asyncio.Event()]
        gate = asyncio.Event()

        def held(index: int) -> Any:
            parts = [{"type": "http.request", "body": DIGIT_RGB, "more_body": True},
                     {"type": "http.request", "body": b"", "more_body": False}]

            async def receive() -> dict[str, Any]:
                if len(parts) == 1:  # the whole image is in; the end of the body waits
                    reading[index].set()
                    await gate.wait()
                return parts.pop(0) if parts else await connected()

            return receive

        received: list[int] = []

        async def whole() -> dict[str, Any]:
            received.append(1)
            if len(received) == 1:
                return {"type": "http.request", "body": DIGIT_RGB, "more_body": False}
            return await connected()

        first, second = (asyncio.ensure_future(answer(client, chunked, held(i))) for i in range(2))
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in reading)), WAIT_S)
        status, headers, body = await asyncio.wait_for(answer(client, chunked, whole), WAIT_S)
        assert status == 503, body
        error = json.loads(body)["error"]
        assert error["code"] == "overloaded" and int(headers["retry-after"]) >= 1
        assert "AESERVE_MAX_BODIES_BYTES" in error["message"]
        assert str(2 * size) in error["message"]
        assert received == ([1] if chunked else [])  # a declared body is refused unread
        assert headers.get("connection") != "close"  # the server drops the body, the client stays
        gate.set()
        for request in (first, second):
            assert (await asyncio.wait_for(request, WAIT_S))[0] == 200
        received.clear()
        assert (await asyncio.wait_for(answer(client, chunked, whole), WAIT_S))[0] == 200

    client.portal.call(scenario)  # type: ignore[union-attr]


def test_bodies_are_given_back_when_their_request_fails(app_with: Callable[..., TestClient]) -> None:
    size = len(DIGIT_RGB)
    client = app_with(max_body_bytes=size, max_bodies_bytes=2 * size)
    png = {"content-type": "image/png"}
    narrow = image_bytes(size=(27, 28), mode="RGB")
    assert size // 2 < len(narrow) <= size
    for _ in range(3):  # each would fill the room, were it kept
        assert_error(client.post(URL, content=b"x" * size, headers=png), 415)
        assert_error(client.post(URL, content=iter([b"x" * size]), headers=png), 415)  # chunked
        assert_error(client.post(URL, content=narrow, headers=png), 422, "wrong_size")
    assert client.post(URL, content=DIGIT_RGB, headers={"content-type": "image/png"}).status_code == 200


def test_every_body_counts_json_too(app_with: Callable[..., TestClient]) -> None:
    """The JSON body of a decode needs the room an upload holds: refused while it is held."""
    size = len(DIGIT_RGB)
    client = app_with(max_body_bytes=size, max_bodies_bytes=size + 100)

    async def scenario() -> int:
        reading, gate = asyncio.Event(), asyncio.Event()

        async def held() -> dict[str, Any]:
            if not reading.is_set():
                reading.set()
                await gate.wait()
                return {"type": "http.request", "body": DIGIT_RGB, "more_body": False}
            return await connected()

        upload = asyncio.ensure_future(answer(client, False, held))
        await asyncio.wait_for(reading.wait(), WAIT_S)
        body = json.dumps({"z": [[0.0] * 32]}).encode()
        assert len(body) > 100
        sent: list[dict[str, Any]] = []

        async def whole() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {**upload_scope(len(body)), "path": "/v1/models/mnist-vae/decode",
                 "raw_path": b"/v1/models/mnist-vae/decode",
                 "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())]}
        await client.app(scope, whole, send)  # type: ignore[arg-type]
        gate.set()
        assert (await asyncio.wait_for(upload, WAIT_S))[0] == 200
        return int(sent[0]["status"])

    assert client.portal.call(scenario) == 503  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def room_for_two(tiny_checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real server, its largest body one ``DIGIT_RGB`` and its room for bodies being read two:
    shared by the tests below, each of which gives back every room it took before it ends."""
    size = len(DIGIT_RGB)
    with running_server(tiny_checkpoints, tmp_path_factory.mktemp("room") / "server.log",
                        AESERVE_MAX_BODY_BYTES=str(size),
                        AESERVE_MAX_BODIES_BYTES=str(2 * size)) as live:
        yield live


def test_the_real_server_refuses_a_third_upload_while_two_are_read_and_serves_it_after(
    room_for_two: LiveServer,
) -> None:
    """On raw sockets: two clients send their headers with ``Expect: 100-continue``; the server's
    ``100 Continue`` says each body has its room and is being read. A third upload is 503 and its
    connection serves it once the two are answered; a client waiting for ``100 Continue`` is
    refused and closed (it holds its body back, so the connection cannot go on)."""
    size = len(DIGIT_RGB)
    head = (f"POST {URL} HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
            f"Content-Length: {size}\r\n").encode()

    def connect(port: int) -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)

    waiting = [connect(room_for_two.port) for _ in range(2)]
    try:
        for sock in waiting:
            sock.sendall(head + b"Expect: 100-continue\r\n\r\n")
            assert read_answer(sock)[0] == 100
        with connect(room_for_two.port) as third, connect(room_for_two.port) as expecting:
            third.sendall(head + b"\r\n" + DIGIT_RGB)
            status, headers, body = read_answer(third)
            assert status == 503 and json.loads(body)["error"]["code"] == "overloaded"
            assert int(headers["retry-after"]) >= 1 and headers.get("connection") != "close"
            expecting.sendall(head + b"Expect: 100-continue\r\n\r\n")
            status, headers, _ = read_answer(expecting)
            assert status == 503 and headers["connection"] == "close"
            assert expecting.recv(1) == b""  # closed
            for sock in waiting:
                sock.sendall(DIGIT_RGB)
                assert read_answer(sock)[0] == 200
            third.sendall(head + b"\r\n" + DIGIT_RGB)  # the same connection, served now
            status, headers, body = read_answer(third)
            assert status == 200 and headers["content-type"] == "image/png"
    finally:
        for sock in waiting:
            sock.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_answered_read_and_dropped_and_the_connection_serves_on(
    room_for_two: LiveServer, framing: str
) -> None:
    """The 413 comes before the body is read; the client (or a proxy) that sends the body anyway
    is not reset halfway, which would lose the answer, and its connection serves the next request."""
    limit = len(DIGIT_RGB)  # the server's AESERVE_MAX_BODY_BYTES
    body = b"x" * (64 * limit)
    if framing == "chunked":
        head = f"POST {URL} HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n" \
               "Transfer-Encoding: chunked\r\n\r\n"
        sent = b"".join(b"%x\r\n%s\r\n" % (1024, body[i:i + 1024]) for i in range(0, len(body), 1024))
        sent += b"0\r\n\r\n"
    else:
        head = f"POST {URL} HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n" \
               f"Content-Length: {len(body)}\r\n\r\n"
        sent = body
    with socket.create_connection(("127.0.0.1", room_for_two.port), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(head.encode())
        if framing == "chunked":  # the refusal comes once the limit is crossed
            sock.sendall(sent[:2 * limit])
            sent = sent[2 * limit:]
        status, headers, answer = read_answer(sock)
        assert status == 413 and json.loads(answer)["error"]["code"] == "payload_too_large"
        assert headers.get("connection") != "close"
        sock.sendall(sent)  # the rest of the body: read and dropped, not reset
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_answer(sock)[0] == 200
