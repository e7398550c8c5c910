"""32-bit BMPs: the alpha in the fourth byte of each pixel is kept as a PNG's is, whichever header
declares it; a fourth byte that is zero everywhere (unused, as the format's spec has it) is no
alpha, and the image is opaque."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app import images
from tests.app.helpers import decode_png

LIMIT = 4096 * 4096
BI_RGB, BI_BITFIELDS = 0, 3
BGRA_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)


def rgba_pattern(width: int = 28, height: int = 28) -> np.ndarray:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    pixels[0, 0, 3], pixels[0, 1, 3] = 0, 255  # fully transparent and opaque pixels too
    return pixels


def bmp32(pixels: np.ndarray, header_size: int = 40, compression: int = BI_RGB) -> bytes:
    """A 32-bit bottom-up BMP of ``pixels`` (H, W, RGBA), each pixel stored as B, G, R, A; a
    header of 56 bytes or more (V3 with alpha, V4, V5) carries the BGRA masks."""
    height, width = pixels.shape[:2]
    data = np.ascontiguousarray(pixels[::-1][..., [2, 1, 0, 3]]).tobytes()
    info = struct.pack("<IiiHHIIiiII", header_size, width, height, 1, 32, compression, len(data),
                       2835, 2835, 0, 0)
    if header_size >= 56:
        info += struct.pack("<4I", *BGRA_MASKS)
    info = info.ljust(header_size, b"\0")
    offset = 14 + header_size
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + data


def png_of(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, "PNG")
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    return images.decode(images.probe(data, LIMIT)).image


@pytest.mark.parametrize(("header_size", "compression"), [
    (40, BI_RGB),  # the layout Pillow itself writes an RGBA image as
    (124, BI_RGB),  # V5 header, no masks
    (108, BI_BITFIELDS),  # V4 header with an alpha mask
    (124, BI_BITFIELDS),  # V5 header with an alpha mask
])
def test_a_32_bit_bmp_keeps_its_alpha_as_the_same_png_does(header_size: int, compression: int) -> None:
    pixels = rgba_pattern()
    as_bmp = decoded(bmp32(pixels, header_size, compression))
    as_png = decoded(png_of(pixels))
    assert as_bmp.mode == as_png.mode == "RGBA"
    assert np.array_equal(np.asarray(as_bmp), np.asarray(as_png))


def test_pillows_own_rgba_bmp_keeps_its_alpha() -> None:
    pixels = rgba_pattern()
    out = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(out, "BMP")
    assert np.array_equal(np.asarray(decoded(out.getvalue())), pixels)


def test_a_fourth_byte_of_zeros_is_unused_not_transparent() -> None:
    pixels = rgba_pattern()
    pixels[..., 3] = 0
    image = decoded(bmp32(pixels))
    assert image.mode == "RGB"
    assert np.array_equal(np.asarray(image), pixels[..., :3])


def test_denoising_a_bmp_keeps_its_alpha(client: TestClient) -> None:
    pixels = rgba_pattern()
    answer = client.post("/v1/models/mnist-dae/denoise",
                         files=[("image", ("x.bmp", bmp32(pixels), "image/bmp"))])
    assert answer.status_code == 200, answer.text
    out = decode_png(answer.content)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out.getchannel("A")), pixels[..., 3])
