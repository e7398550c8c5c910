"""A thin httpx client for aeserve, for scripts, in two flavours: ``Client`` waits for each answer,
``AsyncClient`` awaits it. ``python -m app.client --help`` for the CLI.

    from app.client import AsyncClient, Client
    with Client("http://127.0.0.1:8000", token=None) as ae:
        clean_png = ae.denoise("mnist-dae", open("noisy.png", "rb").read())
        pngs = ae.sample("mnist-vae", n=16, seed=0)
    async with AsyncClient("http://127.0.0.1:8000") as ae:
        cleans = await asyncio.gather(*(ae.denoise("mnist-dae", p) for p in paths))

Both send what ``app.client.operations`` builds and read answers with ``app.client.calls``; they
differ only in how they send and wait.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from app.client import operations
from app.client.calls import (
    GONE,
    AeserveError,
    Call,
    Grid,
    ImageIn,
    Retry,
    bearer_headers,
    connection,
    log,
)

__all__ = ["AeserveError", "AsyncClient", "Client", "Grid", "ImageIn", "bearer_headers", "log"]

P = ParamSpec("P")
T = TypeVar("T")


def _method(method: Callable[..., Any], build: Callable[..., Any]) -> None:
    """``method`` named, documented and signed as the operation ``build`` it sends (less the
    ``Call`` it returns), for ``help()``."""
    functools.update_wrapper(method, build)
    signature = inspect.signature(build)
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self, *signature.parameters.values()], return_annotation=inspect.Signature.empty)


def _waits_for(build: Callable[P, Call[T]]) -> Callable[Concatenate[Client, P], T]:
    """A ``Client`` method: the call ``build`` makes, sent; its answer."""
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._send(build(*args, **kwargs))
    _method(method, build)
    return method


def _awaits(build: Callable[P, Call[T]]) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]:
    """An ``AsyncClient`` method: the call ``build`` makes, sent; its answer, awaited."""
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._send(build(*args, **kwargs))
    _method(method, build)
    return method


class Client:
    """One connection pool to one service; every method maps to one endpoint and waits for its
    answer (httpx's client is thread-safe: threads may share one).

    ``retries``: how many times a call (an operation, the model list or a model's card) is sent
    again when it was answered 503 with ``Retry-After`` (overloaded, past its deadline, shutting
    down) or got no answer at all (nothing listens, as while the service restarts, the connection
    closed first, or a proxy in front of it answered 502 Bad Gateway). The first wait is the one
    the service asks for (1 s when it got no answer), each further one twice the last, each plus
    up to a quarter at random so that clients refused together do not all come back together, and
    none over ``max_wait_s`` (an answer that asks for more is raised at once). Each retry is logged
    as a warning (logger ``app.client``). 0: every error is raised. ``transport``: httpx's, to send
    through (a mock in tests, say)."""

    _sleep = staticmethod(time.sleep)

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float = 60.0, retries: int = 0, max_wait_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.retry = Retry(retries, max_wait_s)
        self.http = httpx.Client(**connection(url, token), timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call[T]) -> T:
        """``call`` sent, and sent again as ``retry`` decides; its answer."""
        attempt = 0
        while True:
            attempt += 1
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self.http.send(call.request(self.http))
            except GONE as error:
                outcome = error
            wait = self.retry.wait_before(attempt, outcome, self.http.base_url)
            if wait is None:
                return call.answer(outcome)
            self._sleep(wait)

    def ready(self) -> bool:
        """Whether the service answers and is ready; False too when it cannot be reached."""
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    models = _waits_for(operations.models)
    limits = _waits_for(operations.limits)
    model = _waits_for(operations.model)
    denoise = _waits_for(operations.denoise)
    denoise_with_sigma = _waits_for(operations.denoise_with_sigma)
    denoise_many = _waits_for(operations.denoise_many)
    encode = _waits_for(operations.encode)
    encode_answer = _waits_for(operations.encode_answer)
    score = _waits_for(operations.score)
    score_answer = _waits_for(operations.score_answer)
    decode = _waits_for(operations.decode)
    sample = _waits_for(operations.sample)
    sample_with_seed = _waits_for(operations.sample_with_seed)
    grid = _waits_for(operations.grid)
    grid_answer = _waits_for(operations.grid_answer)
    interpolate_images = _waits_for(operations.interpolate_images)
    interpolate = _waits_for(operations.interpolate)


class AsyncClient:
    """``Client`` for asyncio: the same arguments (``retries``, ``max_wait_s`` as ``Client``'s;
    ``transport`` an async one), methods, answers, errors and retries, each method to be awaited.
    Calls gathered together are sent together, one connection each, and the service batches what
    arrives together. ``async with``, or ``await aclose()`` when done."""

    _sleep = staticmethod(asyncio.sleep)

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None,
                 timeout: float = 60.0, retries: int = 0, max_wait_s: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.retry = Retry(retries, max_wait_s)
        self.http = httpx.AsyncClient(**connection(url, token), timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, call: Call[T]) -> T:
        """``call`` sent, and sent again as ``retry`` decides; its answer."""
        attempt = 0
        while True:
            attempt += 1
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self.http.send(call.request(self.http))
            except GONE as error:
                outcome = error
            wait = self.retry.wait_before(attempt, outcome, self.http.base_url)
            if wait is None:
                return call.answer(outcome)
            await self._sleep(wait)

    async def ready(self) -> bool:
        """Whether the service answers and is ready; False too when it cannot be reached."""
        try:
            return (await self.http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    models = _awaits(operations.models)
    limits = _awaits(operations.limits)
    model = _awaits(operations.model)
    denoise = _awaits(operations.denoise)
    denoise_with_sigma = _awaits(operations.denoise_with_sigma)
    denoise_many = _awaits(operations.denoise_many)
    encode = _awaits(operations.encode)
    encode_answer = _awaits(operations.encode_answer)
    score = _awaits(operations.score)
    score_answer = _awaits(operations.score_answer)
    decode = _awaits(operations.decode)
    sample = _awaits(operations.sample)
    sample_with_seed = _awaits(operations.sample_with_seed)
    grid = _awaits(operations.grid)
    grid_answer = _awaits(operations.grid_answer)
    interpolate_images = _awaits(operations.interpolate_images)
    interpolate = _awaits(operations.interpolate)
