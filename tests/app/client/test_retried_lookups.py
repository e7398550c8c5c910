"""The model list and a model's card (``models()``, ``model()``) are sent again as the operations
are: they were sent once whatever ``retries`` said, so a script whose first call was the list
failed at once while the service restarted, where each operation would have waited for it. (The
restart itself, nothing listening for a while, is in test_client.py, for an operation and the list.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.client import AeserveError, AsyncClient, Client
from tests.app.live import LiveServer


class Proxy(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A proxy in front of the real service: its first answer is its own (``first``: an error
    answer, or a connection it drops), every later request goes through to the service."""

    def __init__(self, first: Callable[[httpx.Request], httpx.Response]) -> None:
        self.first = first
        self.sent = 0
        self.real = httpx.HTTPTransport()
        self.real_async = httpx.AsyncHTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return self.first(request) if self.sent == 1 else self.real.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent == 1:
            return self.first(request)
        return await self.real_async.handle_async_request(request)

    def close(self) -> None:
        self.real.close()

    async def aclose(self) -> None:
        await self.real_async.aclose()


def starting(_: httpx.Request) -> httpx.Response:
    return httpx.Response(503, headers={"Retry-After": "2"},
                          json={"error": {"code": "unavailable", "message": "starting"}})


def bad_gateway(_: httpx.Request) -> httpx.Response:
    return httpx.Response(502, text="<html>Bad Gateway</html>", headers={"Content-Type": "text/html"})


def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                    request=request)


FIRST = {"503 with Retry-After": (starting, 2.0, AeserveError),
         "a proxy's 502": (bad_gateway, 1.0, AeserveError),
         "no answer": (dropped, 1.0, httpx.RemoteProtocolError)}
LOOKUPS: dict[str, Callable[[Any], Any]] = {"models": lambda ae: ae.models(),
                                            "model": lambda ae: ae.model("mnist-vae")}


@pytest.mark.parametrize("lookup", LOOKUPS)
@pytest.mark.parametrize("first", FIRST)
def test_a_lookup_is_sent_again_after_the_wait_then_answered(
    first: str, lookup: str, server: LiveServer
) -> None:
    """With retries, a look-up refused once (503 with Retry-After, a proxy's 502, a dropped
    connection) is sent again after the wait (the sleep recorded, not slept), and the service's
    answer is the answer, for both clients; with ``retries=0`` the first answer is raised."""
    answer, asked, raised = FIRST[first]
    call = LOOKUPS[lookup]
    with Client(server.url) as plain:
        expected = call(plain)
    waits: list[float] = []

    proxy = Proxy(answer)
    with Client(server.url, retries=1, transport=proxy) as ae:
        ae._sleep = waits.append  # type: ignore[method-assign]
        assert call(ae) == expected
    assert proxy.sent == 2 and len(waits) == 1 and asked <= waits[0] <= 1.25 * asked

    async def awaited(proxy: Proxy, retries: int) -> Any:
        async def wait(seconds: float) -> None:
            waits.append(seconds)
        async with AsyncClient(server.url, retries=retries, transport=proxy) as ae:
            ae._sleep = wait  # type: ignore[method-assign]
            return await call(ae)

    proxy = Proxy(answer)
    assert asyncio.run(awaited(proxy, retries=1)) == expected
    assert proxy.sent == 2 and len(waits) == 2 and asked <= waits[1] <= 1.25 * asked

    proxy = Proxy(answer)
    with Client(server.url, retries=0, transport=proxy) as once, pytest.raises(raised):
        call(once)
    assert proxy.sent == 1
    proxy = Proxy(answer)
    with pytest.raises(raised):
        asyncio.run(awaited(proxy, retries=0))
    assert proxy.sent == 1 and len(waits) == 2
