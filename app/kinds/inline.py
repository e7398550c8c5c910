"""What runs on the event loop and what in the threadpool: one decision, by pixels and bytes.

Decoding an upload, preparing it for the network (resize, mode) and encoding the answer cost by
the pixels: a flat PNG of a few KB can hold millions of pixels. The pixel counts come from the
image headers (``images.Probe``), known before a pixel is decoded. Reading those headers, and
decoding, also cost by the bytes: a file of a few pixels can carry megabytes of chunks or markers
that Pillow walks one by one.

Up to ``INLINE_PIXELS`` and ``INLINE_BYTES`` in all, a few 28×28 digits, the work runs right on
the loop, where a thread hand-off would cost about as much as the work itself and the single-digit
denoise is the fast path (docs/serving.md, "Off the event loop"); anything larger goes to the
threadpool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from app.tracing import stage

INLINE_PIXELS = 64 * 64
INLINE_BYTES = 32 * 1024  # room for an image of INLINE_PIXELS in any accepted format

T = TypeVar("T")


def runs_inline(pixels: int, nbytes: int = 0) -> bool:
    """Whether image work on ``pixels`` pixels (decoded or encoded, in all) read from ``nbytes``
    bytes (the uploads, in all; 0 for an answer) stays on the loop."""
    return pixels <= INLINE_PIXELS and nbytes <= INLINE_BYTES


async def inline_or_thread(stage_name: str, pixels: int, work: Callable[[], T], nbytes: int = 0) -> T:
    """``work()`` on the event loop when ``runs_inline(pixels, nbytes)``, else in the threadpool;
    traced as the request's ``stage_name`` stage (``probe``, ``decode``, ``parse``, ``encode``)
    when tracing is on."""
    with stage(stage_name):
        if runs_inline(pixels, nbytes):
            return work()
        return await run_in_threadpool(work)
