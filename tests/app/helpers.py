"""Image makers and assertions shared by the service tests."""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image


def image_bytes(
    size: tuple[int, int] = (28, 28), mode: str = "L", fmt: str = "PNG", seed: int = 0
) -> bytes:
    """A random image of ``size`` (width, height) and ``mode``, encoded as ``fmt``."""
    rng = np.random.default_rng(seed)
    bands = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], bands), dtype=np.uint8)
    img = Image.fromarray(arr[..., 0] if bands == 1 else arr, mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def png_claiming(width: int, height: int, colour_type: int = 0) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb).

    ``colour_type`` is the PNG's: 0 gray, 2 RGB, 4 gray with alpha, 6 RGBA (8 bits a sample).
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def files(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"img{i}.png", data, "image/png")) for i, data in enumerate(images)]


def decode_png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    img.load()
    return img


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has ``status`` and the one error shape; returns the error object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message"}
    assert error["message"] and "Traceback" not in error["message"]
    if code is not None:
        assert error["code"] == code
    return dict(error)


def error_code(body: bytes) -> str:
    """The code of the one error shape in ``body`` (a JSON answer's bytes)."""
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["message"]
    return str(error["code"])


ORIENTATION = 0x0112


def upright_pattern(width: int, height: int) -> np.ndarray:
    """A gray (height, width) picture whose every rotation and mirror differs: bright top-left."""
    yy, xx = np.mgrid[0:height, 0:width]
    return (255 - (160 * yy / max(height - 1, 1) + 90 * xx / max(width - 1, 1))).astype(np.uint8)


def exif_rotated(upright: np.ndarray, fmt: str = "JPEG") -> bytes:
    """``upright`` stored turned a quarter to the left, with EXIF orientation 6 (turn it right).

    A camera held sideways writes this: the stored pixels are ``width`` x ``height`` swapped, and
    a viewer turns them 90 degrees clockwise to show the picture upright.
    """
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)), "L")
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    buf = io.BytesIO()
    if fmt == "TIFF":  # a TIFF's orientation is one of its own tags
        stored.save(buf, format=fmt, tiffinfo={ORIENTATION: 6})
    else:
        extra: dict[str, Any] = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}.get(fmt, {})
        stored.save(buf, format=fmt, exif=exif.tobytes(), **extra)
    return buf.getvalue()


def stored_pixels(data: bytes) -> np.ndarray:
    """The pixels as stored in the file, no orientation applied."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return np.asarray(img)


def png_of(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return buf.getvalue()


def post_without_accept(client: Any, url: str, **kwargs: Any) -> Any:
    """``client.post`` with no Accept header at all (httpx sends ``*/*`` unless told otherwise)."""
    request = client.build_request("POST", url, **kwargs)
    del request.headers["accept"]
    return client.send(request)


def tiff_with_entry(img: Image.Image, tag: int, field_type: int | None = None,
                    value: int | None = None) -> bytes:
    """``img`` as a little-endian TIFF whose IFD entry ``tag`` gets another type or value."""
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * i
        entry_tag, entry_type, count, entry_value = struct.unpack_from("<HHII", data, at)
        if entry_tag == tag:
            struct.pack_into("<HHII", data, at, tag, field_type or entry_type, count,
                             entry_value if value is None else value)
            return bytes(data)
    raise AssertionError(f"no tag {tag} in the TIFF")


STRIP_OFFSETS, ROWS_PER_STRIP, EXTRA_SAMPLES = 273, 278, 338  # TIFF tags
FLOAT, ASCII = 11, 2  # TIFF field types


def padded_png(png: bytes, extra: int) -> bytes:
    """``png`` with about ``extra`` bytes of empty private chunks before its pixels."""
    chunk = struct.pack(">I", 0) + b"prVt" + struct.pack(">I", zlib.crc32(b"prVt"))
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR's length and name, its 13 bytes, its CRC
    return png[:ihdr_end] + chunk * (extra // len(chunk)) + png[ihdr_end:]
