"""What runs on the event loop and what in the threadpool: one decision, by decoded pixels.

Decoding an upload, preparing it for the network (resize, mode) and encoding the answer cost by
the pixels, not by the bytes: a flat PNG of a few KB can hold millions of pixels. The pixel counts
come from the image headers (``images.Probe``), known before a pixel is decoded.

Up to ``INLINE_PIXELS`` in all, a few 28×28 digits, the work runs right on the loop, where a
thread hand-off would cost about as much as the work itself and the single-digit denoise is the
fast path (docs/serving.md, "Off the event loop"); anything larger goes to the threadpool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from app.observability import stage

INLINE_PIXELS = 64 * 64

T = TypeVar("T")


def runs_inline(pixels: int) -> bool:
    """Whether image work on ``pixels`` pixels (decoded or encoded, in all) stays on the loop."""
    return pixels <= INLINE_PIXELS


async def inline_or_thread(stage_name: str, pixels: int, work: Callable[[], T]) -> T:
    """``work()`` on the event loop for at most ``INLINE_PIXELS`` pixels, else in the threadpool;
    traced as the request's ``stage_name`` stage (``decode``, ``encode``) when tracing is on."""
    with stage(stage_name):
        if runs_inline(pixels):
            return work()
        return await run_in_threadpool(work)
