"""``app.client``: the token as the service reads it, and errors as the service words them."""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.client import AeserveError, Client, bearer_headers
from app.client.calls import check
from app.main import create_app
from tests.app.conftest import make_settings
from tests.app.helpers import decode_png, image_bytes
from tests.app.live import LiveServer, free_port, read_answer, running_server, start_server, stop_server


def test_the_token_loses_the_whitespace_around_it_as_the_service_reads_it() -> None:
    assert bearer_headers("s3cret\n") == {"Authorization": "Bearer s3cret"}
    assert bearer_headers("  ") == {} and bearer_headers(None) == {}


def test_a_token_no_header_can_carry_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError, match="bearer token cannot carry") as refused:
        Client(token="tok\nsecret-part")
    assert "secret-part" not in str(refused.value)


def test_an_error_answer_carries_its_code_message_and_retry_after() -> None:
    answer = httpx.Response(503, headers={"Retry-After": "3"},
                            json={"error": {"code": "overloaded", "message": "busy"}})
    with pytest.raises(AeserveError) as error:
        check(answer)
    assert (error.value.status, error.value.code, error.value.message) == (503, "overloaded", "busy")
    assert error.value.retry_after == 3.0
    proxy = httpx.Response(502, text="<html>Bad Gateway</html>",  # not the service's answer
                           request=httpx.Request("POST", "http://proxy.test/"))
    with pytest.raises(AeserveError) as error:
        check(proxy)
    assert (error.value.code, error.value.retry_after) == ("http_error", None)


def test_a_service_that_cannot_be_reached_is_not_ready() -> None:
    with Client("http://127.0.0.1:9", timeout=5) as client:  # the discard port: nothing listens
        assert client.ready() is False


@pytest.mark.parametrize("url", ["localhost:8000", "127.0.0.1:8000", "ftp://127.0.0.1", "http://",
                                 "http:/127.0.0.1:8000"])
def test_a_url_that_is_no_http_url_is_refused_at_once(url: str) -> None:
    """It was taken, every request failed as a transport error, and ready() was False for ever:
    a script waiting for the service to be ready waited on a typo."""
    with pytest.raises(ValueError, match="is not an http:// or https:// URL with a host"):
        Client(url)


def test_retries_send_an_operation_again_after_the_wait_a_503_asks_for(
    tiny_checkpoints: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real service whose room for bodies is held by an upload that never arrives: every other
    upload is 503 with Retry-After. The client waits as asked, then twice as long, each wait plus
    up to a quarter at random (its sleep recorded here, not slept), says so, sends it again, then
    raises; with room, nothing waits. (It waited exactly Retry-After each time, silently: clients
    refused together all came back together, and a longer overload outlasted every retry.)"""
    limit = 4096
    with running_server(tiny_checkpoints, tmp_path / "server.log", AESERVE_MAX_BODY_BYTES=str(limit),
                        AESERVE_MAX_BODIES_BYTES=str(limit)) as live:
        waits: list[float] = []
        with Client(live.url, retries=2) as client:
            client._sleep = waits.append  # type: ignore[method-assign]
            assert client.denoise("mnist-dae", image_bytes())  # room: no wait
            assert waits == []
            with socket.create_connection(("127.0.0.1", live.port), timeout=60) as held:
                hold_the_room(held, limit)
                with (caplog.at_level(logging.WARNING, logger="app.client"),
                      pytest.raises(AeserveError) as refused):
                    client.denoise("mnist-dae", image_bytes())
        # the held upload's room comes back once the service has seen its client go (and logged
        # so, after): not when the socket closes here
        assert live.wait_for("client went away: POST /v1/models/mnist-dae/denoise"), live.output()[-3000:]
        assert (refused.value.status, refused.value.code) == (503, "overloaded")
        asked = refused.value.retry_after
        assert asked is not None and asked >= 1 and len(waits) == 2
        assert asked <= waits[0] <= 1.25 * asked and 2 * asked <= waits[1] <= 2.5 * asked
        assert [r.getMessage() for r in caplog.records] == [
            f"503 overloaded: sending it again in {wait:.1f} s (retry {i} of 2)"
            for i, wait in enumerate(waits, 1)]
        with Client(live.url, retries=1, max_wait_s=0.5) as impatient:
            impatient._sleep = waits.append  # type: ignore[method-assign]
            with socket.create_connection(("127.0.0.1", live.port), timeout=60) as held:
                hold_the_room(held, limit)
                with pytest.raises(AeserveError):  # a longer wait than it takes: raised at once
                    impatient.denoise("mnist-dae", image_bytes())
        assert len(waits) == 2


def test_waits_are_spread_so_clients_refused_together_come_back_apart() -> None:
    client = Client(retries=3, max_wait_s=30)
    firsts = {client.retry.wait(1, 1.0) for _ in range(20)}
    assert len(firsts) > 1 and all(1.0 <= wait <= 1.25 for wait in firsts)
    assert client.retry.wait(8, 1.0) == 30  # doubled up to max_wait_s, never over it
    assert Client(max_wait_s=0.5).retry.wait(1, None) == 0.5
    client.close()


RESTARTED_CALLS: dict[str, Any] = {  # each True when its answer is the service's
    "an operation": lambda ae: decode_png(ae.denoise("mnist-dae", image_bytes())).size == (28, 28),
    "the model list": lambda ae: "mnist-vae" in [model["name"] for model in ae.models()],
}


@pytest.mark.parametrize("call", RESTARTED_CALLS)
def test_a_service_restarting_is_waited_for_and_the_call_sent_again(
    call: str, tiny_checkpoints: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A script denoising a folder (or listing the models first) while the service restarts:
    nothing listens on its port for a while. With retries the client waits (1 s, then longer) and
    sends it again, saying so; the service is back on that port here when the first wait ends.
    (Retries covered 503s only: the first refused connection raised httpx.ConnectError and the run
    stopped there; the model list was not retried at all.) Without retries the error is raised."""
    answered = RESTARTED_CALLS[call]
    port = free_port()  # the service's, while it is down
    url = f"http://127.0.0.1:{port}"
    restarted: list[LiveServer] = []

    def restart(wait: float) -> None:
        restarted.append(start_server(tiny_checkpoints, tmp_path / "server.log", AESERVE_PORT=str(port)))

    try:
        with Client(url, retries=2) as client:
            client._sleep = restart  # type: ignore[method-assign]
            with caplog.at_level(logging.WARNING, logger="app.client"):
                assert answered(client)
        assert len(restarted) == 1
        (said,) = [r.getMessage() for r in caplog.records]
        assert said.startswith(f"no answer from {url}")
        assert "sending it again in 1." in said and said.endswith("(retry 1 of 2)")
        with Client(url, retries=0) as once:  # no retries: the error is raised
            stop_server(restarted[0])
            with pytest.raises(httpx.ConnectError):
                answered(once)
    finally:
        for server in restarted:
            stop_server(server)


def test_a_proxys_502_is_sent_again_as_a_restart_is(caplog: pytest.LogCaptureFixture) -> None:
    """A proxy in front of a service that is not answering (restarting) says 502 Bad Gateway: with
    retries, the operation is sent again after a wait, which is said."""
    answers = [httpx.Response(502, text="<html>Bad Gateway</html>"),
               httpx.Response(200, content=image_bytes(), headers={"Content-Type": "image/png"})]
    waits: list[float] = []
    with Client(retries=1) as client:
        client.http = httpx.Client(base_url="http://proxy.test/aeserve",
                                   transport=httpx.MockTransport(lambda _: answers.pop(0)))
        client._sleep = waits.append  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="app.client"):
            assert client.denoise("mnist-dae", image_bytes()) == image_bytes()
    assert len(waits) == 1 and 1 <= waits[0] <= 1.25
    assert caplog.records[0].getMessage() == (
        f"502 Bad Gateway: sending it again in {waits[0]:.1f} s (retry 1 of 1)")


def test_a_502_asking_for_a_wait_over_max_wait_s_is_raised_at_once() -> None:
    """A proxy's 502 with ``Retry-After: 60`` and ``max_wait_s=30``: it was sent again after 60 s,
    a wait over ``max_wait_s``. Now it is raised at once, as a 503 asking for that much is."""
    answers = [httpx.Response(502, text="<html>Bad Gateway</html>", headers={"Retry-After": "60"}),
               httpx.Response(200, content=image_bytes(), headers={"Content-Type": "image/png"})]
    waits: list[float] = []
    with Client(retries=1, max_wait_s=30) as client:
        client.http = httpx.Client(base_url="http://proxy.test/aeserve",
                                   transport=httpx.MockTransport(lambda _: answers.pop(0)))
        client._sleep = waits.append  # type: ignore[method-assign]
        with pytest.raises(AeserveError) as refused:
            client.denoise("mnist-dae", image_bytes())
    assert (refused.value.status, refused.value.retry_after, waits) == (502, 60.0, [])


def test_an_answer_that_is_not_the_services_is_one_line_saying_so_and_where_from() -> None:
    """A proxy in front of the service answers its own HTML page (502 when the service is down,
    404 for a wrong path prefix): the error is one line that says it is not the service's answer
    and where it came from (it was the page's first 200 characters, over several lines)."""
    page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body>\n</html>\n"
    answer = httpx.Response(502, text=page, headers={"Content-Type": "text/html"})
    with Client() as client:
        client.http = httpx.Client(base_url="http://proxy.test/aeserve",
                                   transport=httpx.MockTransport(lambda _: answer))
        with pytest.raises(AeserveError) as refused:
            client.denoise("mnist-dae", image_bytes())
    assert (refused.value.status, refused.value.code) == (502, "http_error")
    assert refused.value.message == (
        "Bad Gateway (not the service's answer: text/html from "
        "http://proxy.test/aeserve/v1/models/mnist-dae/denoise?resize=false; is the URL the "
        "service's, and the proxy in between up?)")


@pytest.mark.parametrize("call", [lambda c: c.denoise("mnist-dae", image_bytes()),
                                  lambda c: c.models(),
                                  lambda c: c.grid("mnist-vae", "sample", {"n": 4})])
def test_a_success_that_is_not_the_services_is_an_error_not_a_result(call: Any) -> None:
    """Some other server at the URL (a sign-in page in front of the service) answers 200 with
    HTML: it was saved as the clean PNG, or failed as 'Expecting value: line 1 column 1'."""
    page = httpx.Response(200, text="<html>Sign in</html>", headers={"Content-Type": "text/html"})
    with Client() as client:
        client.http = httpx.Client(base_url="http://gateway.test",
                                   transport=httpx.MockTransport(lambda _: page))
        with pytest.raises(AeserveError) as refused:
            call(client)
    assert (refused.value.status, refused.value.code) == (200, "http_error")
    assert refused.value.message.startswith("OK (not the service's answer: text/html from "
                                            "http://gateway.test/v1/")


def hold_the_room(sock: socket.socket, size: int) -> None:
    """An upload of ``size`` bytes that asks to send its body and never does: once the service says
    ``100 Continue``, its room is reserved."""
    sock.sendall(b"POST /v1/models/mnist-dae/denoise HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
                 b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % size)
    assert read_answer(sock)[0] == 100


@pytest.mark.parametrize(("call", "named"), [
    (lambda c: c.decode("mnist-vae", [[0.0, 1.0], [2.0, float("nan")]]), r"z\[1\]\[1\] is nan"),
    (lambda c: c.interpolate("mnist-vae", [float("inf")], [0.0]), r"z\[0\]\[0\] is inf"),
    (lambda c: c.sample("mnist-vae", temperature=float("-inf")), r"temperature is -inf"),
    (lambda c: c.grid("mnist-vae", "decode", {"z": [[float("nan")]]}), r"z\[0\]\[0\] is nan"),
])
def test_a_nan_or_infinity_is_refused_by_name_before_anything_is_sent(
    call: Any, named: str
) -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"images": [], "seed": 0})

    with Client() as client:
        client.http = httpx.Client(base_url="http://aeserve.test",
                                   transport=httpx.MockTransport(record))
        with pytest.raises(ValueError, match=named + r": JSON carries finite numbers only"):
            call(client)
    assert sent == []


def test_a_model_named_with_url_characters_is_reached_and_files_go_under_their_names(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    """A folder called ``digits #2?`` is a model the service serves: the client percent-encodes
    its name (it asked for ``/v1/models/digits `` before). A file is sent under its own name, so
    the service's error about one image of several names it; bytes are ``image1``, ``image2``."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "mnist-dae", root / "digits #2?")
    good, bad = tmp_path / "digit.png", tmp_path / "truncated.png"
    good.write_bytes(image_bytes())
    bad.write_bytes(image_bytes()[:40])
    with Client() as client, TestClient(create_app(make_settings(root))) as http:
        client.http = http
        assert client.model("digits #2?")["name"] == "digits #2?"
        assert len(client.denoise_many("digits #2?", [good, image_bytes()])) == 2
        with pytest.raises(AeserveError, match=r"image 2 of 2 \('truncated.png'\)"):
            client.denoise_many("digits #2?", [good, bad])
        with pytest.raises(AeserveError, match=r"image 2 of 2 \('image2'\)"):
            client.encode("digits #2?", [image_bytes(), bad.read_bytes()])
