"""Image bytes <-> Pillow images <-> uint8 planes: PNG, JPEG, WebP, BMP and TIFF in, PNG out.

``probe`` reads only the header: format, size, mode and EXIF orientation are known before a pixel
is decoded, so a request's cost (and the pixel limit) is checked first. ``decode`` then loads the
pixels, brings any mode to L, LA, RGB or RGBA and applies the EXIF orientation, so the model sees
the picture upright and the answer comes back upright, in the rotated size. Pillow's own
decompression-bomb guard stays on as a backstop; its error is answered 413 like ours.

A 32-bit BMP's fourth byte is read as alpha whatever its header says (Pillow's ``USE_RAW_ALPHA``):
the format's spec leaves it unused under BI_RGB, but Pillow and many other writers store alpha
there. A fourth byte that is zero everywhere is taken for unused and the image is opaque, as
browsers read it.

Plain 8-bit PNGs, the common upload, take the fast path of ``app/png.py`` for their header and
pixels, and every answer is written there; everything else is Pillow's.
"""

from __future__ import annotations

import base64
import io
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import BmpImagePlugin, Image, ImageOps, UnidentifiedImageError

from app import png
from app.errors import ApiError
from model.image_depth import eight_bit

BmpImagePlugin.USE_RAW_ALPHA = True

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
KEPT_MODES = ("L", "LA", "RGB", "RGBA")
MAX_SIDE = 65535  # JPEG's and WebP's own bound; libpng would not write an answer past 1,000,000
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
ORIENTATION = 0x0112
TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
# what Pillow's readers raise on a malformed file besides OSError: a TIFF tag of the wrong type
# (TypeError), an offset past any size (OverflowError), ...
MALFORMED = (OSError, ValueError, SyntaxError, EOFError, TypeError, OverflowError, IndexError,
             KeyError, struct.error)


class Upload(bytes):
    """An uploaded image's bytes, and which one it is among a request's several (``image 2 of 3
    ('b.png')``): an error about an image that cannot be read names it."""

    part: str

    def __new__(cls, data: bytes, part: str) -> Upload:
        upload = super().__new__(cls, data)
        upload.part = part
        return upload


@contextmanager
def naming(data: bytes) -> Iterator[None]:
    """An image's refusal (415, 413, 422) names the upload it is about, when it is one of several."""
    try:
        yield
    except ApiError as exc:
        if not isinstance(data, Upload):
            raise
        raise ApiError(exc.status, exc.code, f"{data.part}: {exc.message}", exc.headers) from exc


@dataclass(slots=True)
class Probe:
    """An opened, not yet decoded image: its upright size and colour bands."""

    image: Image.Image | None  # Pillow's reader; None for a plain PNG (``head`` is set instead)
    data: bytes
    head: png.Header | None  # a plain PNG's header: the fast path decodes ``data``
    width: int
    height: int
    bands: int  # colour bands after decoding: 1 (gray) or 3 (RGB); alpha is set aside
    orientation: int  # EXIF orientation from the header (1: upright)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _unsupported(detail: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", detail)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation from the header (Pillow's PNG ``getexif`` would decode the pixels)."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    value = img.getexif().get(ORIENTATION, 1)
    # a value outside 1..8 (text, a rational, garbage) says nothing: the pixels are shown as stored
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def probe(data: bytes, max_pixels: int) -> Probe:
    """Open one image lazily: 415 for what is not an accepted image, 413 over ``max_pixels``."""
    with naming(data):
        return _probe(data, max_pixels)


def _probe(data: bytes, max_pixels: int) -> Probe:
    if not data:
        raise _unsupported("empty image: the upload holds no bytes")
    head = png.header(data)
    if head is not None:
        _check_pixels(head.width, head.height, max_pixels)
        return Probe(None, data, head, head.width, head.height, 1 if head.mode in GRAY_MODES else 3, 1)
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        orientation = _orientation(img)
    except Image.DecompressionBombError as exc:  # Pillow's own guard, past twice its pixel limit
        raise ApiError(413, "too_many_pixels",
                       f"image refused before decoding: its header declares more than "
                       f"{2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels; the limit is {max_pixels} "
                       "(AESERVE_MAX_PIXELS)") from exc
    except UnidentifiedImageError as exc:
        raise _unsupported(_unidentified(data)) from exc
    except MALFORMED as exc:
        raise _unsupported(f"cannot read the image's header, it is truncated or corrupt ({exc})"
                           ) from exc
    width, height = img.size
    _check_pixels(width, height, max_pixels)
    if orientation in TRANSPOSED and img.format != "TIFF":  # Pillow opens a TIFF upright already
        width, height = height, width
    gray = img.mode in GRAY_MODES or png.is_gray_alpha(data)
    return Probe(img, data, None, width, height, 1 if gray else 3, orientation)


def _unidentified(data: bytes) -> str:
    """Why Pillow found no reader: a file of an accepted format whose variant it cannot read (a
    float RGB TIFF, a PNG of an unknown colour type) is told so, not to send the format it sent."""
    for fmt in ACCEPTED_FORMATS:
        accept = Image.OPEN[fmt][1]
        if accept is not None and accept(data[:16]):
            return (f"the upload is a {fmt} file this service cannot read: it is corrupt, or its "
                    "pixel layout (bit depth, channels, sample format) is not one the decoder "
                    "supports; save it as 8-bit or 16-bit gray or RGB")
    return "the upload is not an image this service reads: send PNG, JPEG, WebP, BMP or TIFF"


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width == 0 or height == 0:
        raise _unsupported(f"image is {width}x{height}: it has no pixels")
    if max(width, height) > MAX_SIDE:
        raise ApiError(413, "too_many_pixels",
                       f"image is {width}x{height}; a side may be at most {MAX_SIDE} pixels")
    if width * height > max_pixels:
        raise ApiError(
            413,
            "too_many_pixels",
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
            "(AESERVE_MAX_PIXELS)",
        )


@dataclass(slots=True)
class Decoded:
    """A decoded image, upright, in L, LA, RGB or RGBA. A plain PNG holds the fast path's pixels
    and makes its Pillow image only when one is asked for (to resize, change mode, split alpha)."""

    mode: str
    width: int
    height: int
    pixels: np.ndarray | None = None  # (H, W) or (H, W, bands) uint8, from the fast path
    pillow: Image.Image | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def image(self) -> Image.Image:
        if self.pillow is None:
            assert self.pixels is not None
            self.pillow = Image.fromarray(self.pixels)
        return self.pillow

    def planes(self) -> np.ndarray:
        """(C, H, W) uint8 planes of an L or RGB image (from the fast path's pixels when there)."""
        if self.pixels is None:
            return to_planes(self.image)
        if self.pixels.ndim == 2:
            return self.pixels[None]
        return np.ascontiguousarray(self.pixels.transpose(2, 0, 1))


def decode(p: Probe) -> Decoded:
    """The pixels, upright, in L, LA, RGB or RGBA; 415 for a truncated or corrupt file."""
    with naming(p.data):
        return _decode(p)


def _decode(p: Probe) -> Decoded:
    if p.head is not None:
        try:
            pixels = png.decode(p.data, p.head)
        except ValueError as exc:
            raise _unsupported(f"the PNG image is truncated or corrupt ({exc})") from exc
        return Decoded(p.head.mode, p.width, p.height, pixels=pixels)
    img = p.image
    assert img is not None  # every probe has a header or a Pillow reader
    fmt = img.format
    try:
        img.load()
        # a PNG may carry its EXIF after the pixels: known only now
        if p.orientation != 1 or (img.format == "PNG" and _orientation(img) != 1):
            ImageOps.exif_transpose(img, in_place=True)
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "too_many_pixels", f"image refused: {exc}") from exc
    except MALFORMED as exc:
        raise _unsupported(f"the {fmt} image is truncated or corrupt ({exc})") from exc
    try:
        img = normalize_mode(img)
    except ValueError as exc:  # Pillow: "conversion from <mode> to <mode> not supported"
        raise _unsupported(f"the {fmt} image's mode {img.mode} cannot be read ({exc})") from exc
    if fmt == "BMP" and img.mode == "RGBA" and img.getchannel("A").getextrema() == (0, 0):
        img = img.convert("RGB")  # a 32-bit BMP's unused fourth byte, not a transparent image
    if p.bands == 1 and img.mode == "RGBA":  # a 16-bit gray + alpha PNG: gray it was, gray it stays
        img = img.convert("LA")
    return Decoded(img.mode, img.width, img.height, pillow=img)


def normalize_mode(img: Image.Image) -> Image.Image:
    """Bring any Pillow mode to L, LA, RGB or RGBA (palette and bilevel images included)."""
    if img.mode in ("L", "RGB") and "transparency" in img.info:  # a PNG's tRNS colour key
        return img.convert("LA" if img.mode == "L" else "RGBA")
    if img.mode in KEPT_MODES:
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("PA", "RGBa"):
        return img.convert("RGBA")
    if img.mode == "La":  # premultiplied alpha (a TIFF's associated alpha), as Pillow reads it
        return img.convert("LA")
    if img.mode == "1":
        return img.convert("L")
    if img.mode.startswith("I") or img.mode == "F":
        return eight_bit(img)  # scaled, as the models were trained on such images
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """The colour part (L or RGB) and the alpha band, if any."""
    if img.mode == "LA":
        return img.getchannel("L"), img.getchannel("A")
    if img.mode == "RGBA":
        return img.convert("RGB"), img.getchannel("A")
    return img, None


def with_alpha(img: Image.Image, alpha: Image.Image | None) -> Image.Image:
    if alpha is None:
        return img
    out = img.convert("LA" if img.mode == "L" else "RGBA")
    out.putalpha(alpha)
    return out


def to_planes(img: Image.Image) -> np.ndarray:
    """(C, H, W) uint8 planes of an L or RGB image (scaling to floats happens on the model thread)."""
    bands = len(img.getbands())
    flat = np.frombuffer(bytearray(img.tobytes()), dtype=np.uint8)  # a writable copy, for torch
    if bands == 1:
        return flat.reshape(1, img.height, img.width)
    return np.ascontiguousarray(flat.reshape(img.height, img.width, bands).transpose(2, 0, 1))


def from_planes(planes: np.ndarray) -> Image.Image:
    """An L (one plane) or RGB (three planes) image from (C, H, W) uint8; L shares the memory."""
    _, h, w = planes.shape
    if planes.shape[0] == 1:
        return Image.frombuffer("L", (w, h), np.ascontiguousarray(planes[0]), "raw", "L", 0, 1)
    return Image.frombuffer("RGB", (w, h), np.ascontiguousarray(planes.transpose(1, 2, 0)),
                            "raw", "RGB", 0, 1)


def encode_png(img: Image.Image, compress_level: int = 1) -> bytes:
    """An L, LA, RGB or RGBA image (every image this module makes) as a PNG, by the fast path."""
    if img.mode not in KEPT_MODES:
        raise ValueError(f"encode_png takes L, LA, RGB or RGBA images, not {img.mode}")
    return png.encode(np.asarray(img), compress_level)


def planes_png(planes: np.ndarray, compress_level: int = 1) -> bytes:
    """(1, H, W) or (3, H, W) uint8 planes as a gray or RGB PNG, with no Pillow image between."""
    pixels = planes[0] if planes.shape[0] == 1 else planes.transpose(1, 2, 0)
    return png.encode(pixels, compress_level)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def grid(images: list[Image.Image], columns: int | None = None, pad: int = 2) -> Image.Image:
    """Tile same-size images into one image, row-major, ``pad`` pixels apart."""
    if not images:
        raise ValueError("grid needs at least one image")
    cols = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    sheet = Image.new(images[0].mode, (cols * w + (cols - 1) * pad, rows * h + (rows - 1) * pad))
    for i, tile in enumerate(images):
        r, c = divmod(i, cols)
        sheet.paste(tile, (c * (w + pad), r * (h + pad)))
    return sheet
