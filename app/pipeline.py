"""Image operations as three small steps: decode (bytes -> rows), predict (batcher), encode (PNG).

Colour handling follows the model: a one-channel model denoises an RGB image channel by channel
(three rows), a three-channel model sees a gray image replicated; alpha is set aside and put back
unchanged. Encode and score need one row per image, so they convert to the model's channels instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from app import codec
from app.errors import ApiError
from app.registry import ServedModel


@dataclass(slots=True)
class Prepared:
    """One decoded image as model rows, and what is needed to turn the output back into it."""

    rows: torch.Tensor  # (R, C_model, H, W) uint8
    size: tuple[int, int]  # original (width, height)
    mode: str  # original mode: L, LA, RGB or RGBA
    alpha: Image.Image | None
    per_channel: bool


def _model_size(served: ServedModel, img: Image.Image, resize: bool) -> tuple[int, int] | None:
    """The (width, height) to resize to, or None to keep; 422 for a wrong size without resize."""
    if served.size is None:
        return None
    h, w = served.size
    if img.size == (w, h):
        return None
    if not resize:
        raise ApiError(
            422,
            "wrong_size",
            f"model {served.name} takes {w}x{h} images; this one is {img.width}x{img.height}. "
            "Send resize=true to have it resized (the answer comes back in the original size).",
        )
    return (w, h)


def decode_image(
    data: bytes, served: ServedModel, resize: bool, max_pixels: int, keep_color: bool
) -> Prepared:
    """Bytes -> model rows. ``keep_color=False`` gives exactly one row in the model's channels."""
    img = codec.open_image(data, max_pixels)
    base, alpha = codec.split_alpha(img)
    target = _model_size(served, base, resize)
    if target is not None:
        base = base.resize(target, Image.Resampling.LANCZOS)
    c = served.channels
    per_channel = False
    if c == 1 and base.mode == "RGB" and served.kind != "photo":  # photo models do colour themselves
        if keep_color:
            per_channel = True
        else:
            base = base.convert("L")
    elif c == 3 and base.mode == "L":
        base = base.convert("RGB")
    planes = codec.to_planes(base)  # contiguous, so both views below are too
    rows = planes[:, None] if per_channel else planes[None]
    return Prepared(torch.from_numpy(rows), img.size, img.mode, alpha, per_channel)


def encode_image(prep: Prepared, out: torch.Tensor, compress_level: int) -> bytes:
    """Model rows -> PNG bytes in the original size and mode."""
    planes = out[:, 0].numpy() if prep.per_channel else out[0].numpy()  # uint8
    img = codec.from_planes(planes)
    if img.size != prep.size:
        img = img.resize(prep.size, Image.Resampling.BICUBIC)
    base_mode = "L" if prep.mode in ("L", "LA") else "RGB"
    if img.mode != base_mode:
        img = img.convert(base_mode)
    return codec.encode_png(codec.with_alpha(img, prep.alpha), compress_level)


def latent_images(out: torch.Tensor) -> list[Image.Image]:
    """Decoder output (N, C, H, W) uint8 -> N images (L or RGB)."""
    return [codec.from_planes(row) for row in out.numpy()]
