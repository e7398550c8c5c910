"""Image bytes <-> Pillow images <-> arrays: PNG, JPEG, WebP, BMP and TIFF in, PNG out.

The pixel limit is checked on the header (``Image.open`` is lazy) before any pixel is decoded, so a
small file that claims 30000x30000 pixels is refused without allocating. Pillow's own
decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, 89 Mpx by default) stays on as a backstop;
its error is answered 413 like ours.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.errors import ApiError

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
KEPT_MODES = ("L", "LA", "RGB", "RGBA")


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode one image, refusing unsupported formats (415) and too many pixels (413)."""
    if not data:
        raise ApiError(415, "unsupported_media_type", "empty image: the upload holds no bytes")
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "too_many_pixels", f"image refused before decoding: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"cannot decode the image: send PNG, JPEG, WebP, BMP or TIFF ({type(exc).__name__})",
        ) from exc
    width, height = img.size
    if width * height > max_pixels:
        raise ApiError(
            413,
            "too_many_pixels",
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
        )
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise ApiError(413, "too_many_pixels", f"image refused: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ApiError(
            415, "unsupported_media_type", f"the {img.format} image is truncated or corrupt ({exc})"
        ) from exc
    return normalize_mode(img)


def normalize_mode(img: Image.Image) -> Image.Image:
    """Bring any Pillow mode to L, LA, RGB or RGBA (palette and bilevel images included)."""
    if img.mode in KEPT_MODES:
        return img
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode == "PA":
        return img.convert("RGBA")
    if img.mode in ("1",):
        return img.convert("L")
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
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
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


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
