"""Signals handled on the event loop: the drain on SIGTERM and SIGINT, the reload on SIGHUP
(``app.main``'s lifespan)."""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


def on_signals(signals: tuple[int, ...], callback: Callable[[], object],
               chain: bool = True) -> Callable[[], None]:
    """Run ``callback`` on the event loop when one of ``signals`` arrives; returns the undo.

    With ``chain`` the handler installed before (the server's: call this from the lifespan's
    startup, uvicorn has installed its handlers by then) runs next, or the default action when
    there was none. Signals reach only the main thread; elsewhere (a test client's portal thread)
    nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in signals}

    def handler(sig: int, frame: FrameType | None) -> None:
        # in a fresh context: the signal may land while a request runs, and its request id (a
        # context variable) is no part of what the callback does
        loop.call_soon_threadsafe(callback, context=contextvars.Context())
        if not chain:
            return
        then = previous[sig]
        if callable(then):
            then(sig, frame)
        else:  # no server handler: restore the default and let the signal act
            signal.signal(sig, then)
            signal.raise_signal(sig)

    for sig in signals:
        signal.signal(sig, handler)

    def undo() -> None:
        for sig, then in previous.items():
            signal.signal(sig, then)

    return undo
