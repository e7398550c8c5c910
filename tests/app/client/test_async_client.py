"""``AsyncClient`` against the real service: the answers, errors and retries of ``Client``, awaited."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from app.client import AeserveError, AsyncClient, Client
from tests.app.helpers import decode_png, image_bytes
from tests.app.live import LiveServer


def test_the_async_client_answers_as_the_client_does(server: LiveServer, tmp_path: Path) -> None:
    """Every method, awaited, answers what ``Client``'s answers; a folder's images gathered
    together are all denoised."""
    folder = tmp_path / "noisy"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(image_bytes(seed=i))
    images = sorted(folder.iterdir())
    with Client(server.url) as ae:
        expected = ([ae.denoise("mnist-dae", image) for image in images],
                    ae.models(), ae.model("mnist-vae"), ae.limits(),
                    ae.denoise_many("mnist-dae", images[:2]),
                    ae.encode_answer("mnist-vae", images[:2], sample=True, seed=3),
                    ae.score_answer("mnist-vae", images[:1], k=5, seed=1),
                    ae.sample_with_seed("mnist-vae", n=3, seed=2),
                    ae.grid_answer("mnist-vae", "sample", {"n": 4, "seed": 5}),
                    ae.interpolate_images("mnist-dae", images[0], images[1], steps=4),
                    ae.interpolate("mnist-vae", [0.0] * 32, [1.0] * 32, steps=3))

    async def answers() -> tuple[object, ...]:
        async with AsyncClient(server.url) as ae:
            assert await ae.ready()
            cleans = await asyncio.gather(*(ae.denoise("mnist-dae", image) for image in images))
            return (cleans, await ae.models(), await ae.model("mnist-vae"), await ae.limits(),
                    await ae.denoise_many("mnist-dae", images[:2]),
                    await ae.encode_answer("mnist-vae", images[:2], sample=True, seed=3),
                    await ae.score_answer("mnist-vae", images[:1], k=5, seed=1),
                    await ae.sample_with_seed("mnist-vae", n=3, seed=2),
                    await ae.grid_answer("mnist-vae", "sample", {"n": 4, "seed": 5}),
                    await ae.interpolate_images("mnist-dae", images[0], images[1], steps=4),
                    await ae.interpolate("mnist-vae", [0.0] * 32, [1.0] * 32, steps=3))

    got = asyncio.run(answers())
    assert got == expected
    assert [decode_png(png).size for png in expected[0]] == [(28, 28)] * 5


def test_an_async_error_is_the_services_error_and_spares_the_calls_beside_it(
    server: LiveServer
) -> None:
    """A refused call raises ``AeserveError`` with the service's status, code and message; the
    calls gathered beside it are answered."""
    async def gathered() -> list[bytes | BaseException]:
        async with AsyncClient(server.url) as ae:
            return await asyncio.gather(ae.denoise("mnist-dae", image_bytes()),
                                        ae.denoise("mnist-dae", image_bytes((40, 30))),
                                        ae.sample("no-such-model", n=1),
                                        return_exceptions=True)

    clean, wrong_size, unknown = asyncio.run(gathered())
    assert isinstance(clean, bytes) and decode_png(clean).size == (28, 28)
    assert isinstance(wrong_size, AeserveError) and isinstance(unknown, AeserveError)
    assert (wrong_size.status, wrong_size.code) == (422, "wrong_size")
    assert "takes 28x28 images; this one is 40x30" in wrong_size.message
    assert (unknown.status, unknown.code) == (404, "unknown_model")


class DropsFirst(httpx.AsyncBaseTransport):
    """The real transport, but the first connection closes before its answer comes."""

    def __init__(self) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.dropped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.dropped:
            self.dropped += 1
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                            request=request)
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


def test_an_async_call_that_got_no_answer_is_sent_again_after_the_wait(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With retries, a connection closed before its answer is waited for (1 s, plus up to a quarter;
    the sleep recorded, not slept), said, and sent again to the service, which answers; without,
    the error is raised."""
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    async def denoised(retries: int) -> bytes:
        async with AsyncClient(server.url, retries=retries, transport=DropsFirst()) as ae:
            ae._sleep = wait  # type: ignore[method-assign]
            return await ae.denoise("mnist-dae", image_bytes())

    with caplog.at_level(logging.WARNING, logger="app.client"):
        assert decode_png(asyncio.run(denoised(retries=2))).size == (28, 28)
    assert len(waits) == 1 and 1 <= waits[0] <= 1.25
    assert [r.getMessage() for r in caplog.records] == [
        f"no answer from {server.url} (Server disconnected without sending a response.): "
        f"sending it again in {waits[0]:.1f} s (retry 1 of 2)"]
    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(denoised(retries=0))
    assert len(waits) == 1


def test_an_async_503_is_waited_for_as_asked_then_twice_as_long_then_raised() -> None:
    """The service's 503 with ``Retry-After: 2``, each time: the waits are 2 s, then 4 s (each plus
    up to a quarter), then the error is raised with what it asked for."""
    busy = httpx.Response(503, headers={"Retry-After": "2"},
                          json={"error": {"code": "overloaded", "message": "busy"}})
    sent: list[httpx.Request] = []
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return busy

    async def denoised() -> bytes:
        async with AsyncClient(retries=2, transport=httpx.MockTransport(answer)) as ae:
            ae._sleep = wait  # type: ignore[method-assign]
            return await ae.denoise("mnist-dae", image_bytes())

    with pytest.raises(AeserveError) as refused:
        asyncio.run(denoised())
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "overloaded", 2)
    assert len(sent) == 3 and 2 <= waits[0] <= 2.5 and 4 <= waits[1] <= 5


def test_the_async_client_checks_what_it_is_given_before_anything_is_sent() -> None:
    """The token, the URL and a NaN are refused as ``Client`` refuses them; nothing is sent."""
    sent: list[httpx.Request] = []
    with pytest.raises(ValueError, match="bearer token cannot carry") as refused:
        AsyncClient(token="tok\nsecret-part")
    assert "secret-part" not in str(refused.value)
    with pytest.raises(ValueError, match="is not an http:// or https:// URL with a host"):
        AsyncClient("localhost:8000")

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"images": []})

    async def decoded() -> list[bytes]:
        async with AsyncClient(transport=httpx.MockTransport(record)) as ae:
            return await ae.decode("mnist-vae", [[0.0, float("nan")]])

    with pytest.raises(ValueError, match=r"z\[0\]\[1\] is nan: JSON carries finite numbers only"):
        asyncio.run(decoded())
    assert sent == []


def test_a_success_that_is_not_the_services_is_an_async_error_too() -> None:
    page = httpx.Response(200, text="<html>Sign in</html>", headers={"Content-Type": "text/html"})

    async def denoised() -> bytes:
        async with AsyncClient("http://gateway.test",
                               transport=httpx.MockTransport(lambda _: page)) as ae:
            return await ae.denoise("mnist-dae", image_bytes())

    with pytest.raises(AeserveError) as refused:
        asyncio.run(denoised())
    assert (refused.value.status, refused.value.code) == (200, "http_error")
    assert refused.value.message.startswith("OK (not the service's answer: text/html from "
                                            "http://gateway.test/v1/")
