"""What runs on the event loop: decided by the pixels an image decodes to, and by its bytes."""

from __future__ import annotations

import asyncio
import io
import threading

from PIL import Image

from app import images
from app.kinds.inline import INLINE_BYTES, INLINE_PIXELS, inline_or_thread, runs_inline
from tests.app.helpers import image_bytes, padded_png


def flat_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), color=128).save(buf, format="PNG")
    return buf.getvalue()


def test_the_choice_is_by_decoded_pixels_first() -> None:
    bomb = flat_png(2800, 2800)  # 7.8 megapixels in a few KB
    assert len(bomb) < 20_000
    assert not runs_inline(images.probe(bomb, 4096 * 4096).pixels)
    digit = images.probe(image_bytes(), 4096 * 4096)  # the measured fast path stays on the loop
    assert runs_inline(digit.pixels) and runs_inline(5 * digit.pixels)
    noisy = image_bytes(size=(64, 64), mode="RGBA")  # more bytes than the bomb, few pixels
    assert len(noisy) > len(bomb) and runs_inline(images.probe(noisy, 4096 * 4096).pixels, len(noisy))


def test_a_few_pixels_behind_many_bytes_leave_the_loop() -> None:
    padded = padded_png(image_bytes(size=(8, 8)), 100_000)
    probe = images.probe(padded, 4096 * 4096)  # Pillow walks every chunk to reach the pixels
    assert probe.pixels == 64 and images.decode(probe).size == (8, 8)
    assert not runs_inline(probe.pixels, len(padded))
    assert runs_inline(probe.pixels, INLINE_BYTES) and not runs_inline(probe.pixels, INLINE_BYTES + 1)


def test_work_runs_on_the_loop_up_to_the_limit_and_in_a_thread_above() -> None:
    async def threads() -> tuple[int, int, int]:
        small = await inline_or_thread("decode", INLINE_PIXELS, threading.get_ident)
        large = await inline_or_thread("decode", INLINE_PIXELS + 1, threading.get_ident)
        return threading.get_ident(), small, large

    loop, small, large = asyncio.run(threads())
    assert small == loop and large != loop
