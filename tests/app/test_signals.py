"""Signals handled on the event loop: the drain's on SIGTERM, chained to the server's handler.

Everything runs on an event loop of its own, never by sleeping.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import Receive, Scope, Send

from app.drain import Drain
from app.request_ids import RequestIdMiddleware, current_request_id
from app.signals import on_signals
from app.stopping import STOP_SIGNALS
from tests.app.test_admission import LONG_S, run


@contextmanager
def handling(sig: int, handler: Any) -> Iterator[None]:
    """``handler`` installed for ``sig`` while the block runs, whatever was there put back after."""
    original = signal.signal(sig, handler)
    try:
        yield
    finally:
        signal.signal(sig, original)


def test_sigterm_begins_the_drain_and_hands_the_signal_on() -> None:
    seen: list[int] = []

    def server_handler(sig: int, frame: object) -> None:  # stands for uvicorn's
        seen.append(sig)

    async def scenario() -> tuple[bool, bool]:
        drain = Drain(LONG_S)
        undo = on_signals(STOP_SIGNALS, drain.begin)
        try:
            installed = signal.getsignal(signal.SIGTERM) is not server_handler
            signal.raise_signal(signal.SIGTERM)
            await asyncio.sleep(0)  # the handler scheduled ``begin`` on the loop
            return drain.draining, installed
        finally:
            undo()
            drain.cancel()

    with handling(signal.SIGTERM, server_handler):
        draining, installed = run(scenario)
        restored = signal.getsignal(signal.SIGTERM)
    assert draining and installed
    assert seen == [signal.SIGTERM]  # the server's own handler still ran
    assert restored is server_handler  # undo put it back


def test_an_unchained_signal_runs_only_the_callback() -> None:
    seen: list[str] = []

    def before(sig: int, frame: object) -> None:
        seen.append("before")

    async def scenario() -> None:
        undo = on_signals((signal.SIGUSR1,), lambda: seen.append("callback"), chain=False)
        try:
            signal.raise_signal(signal.SIGUSR1)
            await asyncio.sleep(0)
        finally:
            undo()

    with handling(signal.SIGUSR1, before):
        run(scenario)
    assert seen == ["callback"]


def test_signals_are_not_touched_off_the_main_thread() -> None:
    before = signal.getsignal(signal.SIGTERM)
    result: list[bool] = []

    def in_thread() -> None:
        async def scenario() -> None:
            undo = on_signals(STOP_SIGNALS, lambda: None)
            result.append(signal.getsignal(signal.SIGTERM) is before)
            undo()

        asyncio.run(scenario())

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(60)
    assert result == [True]


def test_a_signal_callback_runs_outside_the_request_the_signal_interrupted() -> None:
    seen: dict[str, str] = {}

    async def scenario() -> None:
        called = asyncio.Event()

        def callback() -> None:  # logs (a drain's, a reload's) would carry this id
            seen["callback"] = current_request_id()
            called.set()

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            seen["request"] = current_request_id()
            signal.raise_signal(signal.SIGUSR1)  # lands while this request runs

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: Any) -> None:
            pass

        undo = on_signals((signal.SIGUSR1,), callback, chain=False)
        try:
            await RequestIdMiddleware(endpoint)(
                {"type": "http", "headers": [(b"x-request-id", b"req-1")]}, receive, send)
            await asyncio.wait_for(called.wait(), LONG_S)
        finally:
            undo()

    with handling(signal.SIGUSR1, signal.getsignal(signal.SIGUSR1)):
        run(scenario)
    assert seen == {"request": "req-1", "callback": "-"}
