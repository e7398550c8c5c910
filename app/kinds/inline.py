"""What runs on the event loop and what in the threadpool: one decision, by decoded pixels.

Decoding an upload, preparing it for the network (resize, mode) and encoding the answer cost by
the pixels, not by the bytes: a flat 14 KB PNG can hold 2800×2800 pixels, and its decode and
LANCZOS resize held the event loop for 130 ms when the choice was by compressed size. The pixel
counts come from the image headers (``images.Probe``), known before a pixel is decoded.

Up to ``INLINE_PIXELS`` in all, a few 28×28 digits, the work runs right on the loop: a thread
hand-off (60 to 170 µs on the 2-core VM) costs about what decoding, preparing and encoding a digit
does, and the single-digit denoise is the measured fast path (docs/benchmarks.md). Anything larger
goes to the threadpool; at the limit, a 64×64 RGB image, the loop is held about 0.4 ms.
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
