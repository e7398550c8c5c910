"""The PNG fast path: 8-bit PNGs read by libspng and written by libpng (imagecodecs), not Pillow.

A denoise of a small PNG spends more time in Pillow's per-chunk Python than in the pixels
(docs/benchmarks.md, "Service throughput on a CPU"). Here an 8-bit PNG's header is read straight
from its IHDR chunk (size and colour type, no Pillow object) and its pixels are decoded by
imagecodecs; every PNG the service answers with is written by imagecodecs too. Everything else
(other formats, 16-bit or palette PNGs, gray + alpha, which libspng does not decode, and PNGs
carrying EXIF or a ``tRNS`` colour key, which Pillow reads into its own modes) goes through
Pillow in ``app/images.py``, as before.

Decoding is libspng's, not libpng's: imagecodecs' ``png_decode`` (2026.3.6) drops a reference to
``None`` each time it fails, so a stream of corrupt uploads ends the process
(``tests/app/test_png.py`` checks that this decoder does not).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import imagecodecs
import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODES = {0: "L", 2: "RGB", 6: "RGBA"}  # colour type -> Pillow mode, at 8 bits a sample
BANDS = {"L": 1, "RGB": 3, "RGBA": 4}


@dataclass(frozen=True, slots=True)
class Header:
    width: int
    height: int
    mode: str  # L, RGB or RGBA


def header(data: bytes) -> Header | None:
    """The header of a PNG this module decodes exactly as Pillow would; None for any other file.

    The chunk names are searched for in the whole file: a match inside compressed data only sends
    the file to Pillow, which reads it correctly either way.
    """
    ihdr = _ihdr(data)
    if ihdr is None:
        return None
    width, height, depth, colour = ihdr
    mode = MODES.get(colour)
    if depth != 8 or mode is None or b"eXIf" in data or b"tRNS" in data:
        return None
    return Header(width, height, mode)


def is_gray_alpha(data: bytes) -> bool:
    """Whether ``data`` is a gray + alpha PNG of any depth (Pillow opens a 16-bit one as RGBA)."""
    ihdr = _ihdr(data)
    return ihdr is not None and ihdr[3] == 4


def _ihdr(data: bytes) -> tuple[int, int, int, int] | None:
    """A PNG's width, height, bit depth and colour type; None for any other file."""
    if len(data) < 33 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    return width, height, depth, colour


def decode(data: bytes, head: Header) -> np.ndarray:
    """The pixels as (H, W) for L, else (H, W, bands), uint8; ValueError for a corrupt file."""
    try:
        pixels = imagecodecs.spng_decode(data)
    except (RuntimeError, ValueError) as exc:  # imagecodecs.SpngError is a RuntimeError
        raise ValueError(f"libspng: {exc}") from exc
    bands = BANDS[head.mode]
    want = (head.height, head.width) if bands == 1 else (head.height, head.width, bands)
    if pixels.dtype != np.uint8 or pixels.shape != want:
        raise ValueError(f"decoded {pixels.dtype} {pixels.shape}, header says uint8 {want}")
    return pixels


def encode(pixels: np.ndarray, level: int) -> bytes:
    """(H, W) or (H, W, 1-4) uint8 pixels as a PNG (L, LA, RGB or RGBA) at zlib ``level``."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    # the output buffer, sized for the worst case: libpng's default guess is too small for
    # incompressible images with many short rows (each row adds a filter byte)
    rows = pixels.shape[0]
    raw = rows * (pixels.size // max(rows, 1) + 1)
    return bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels), level=level,
                                        out=raw + raw // 8 + 1024))
