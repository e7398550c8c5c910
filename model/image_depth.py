"""Gray images deeper than 8 bits, brought to 8 bits one way for training and for serving.

Pillow's ``convert("L")`` clips 16-bit, 32-bit and float values at 255, which makes a 16-bit photo
white; :func:`eight_bit` scales them instead. ``model.data`` reads training images through it and
the service (``app.images``) reads uploads through it, so a model sees such an image the same way in
both.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float gray image as 8-bit gray ("L"), its white made 255; any other
    image as it is. The white: 65535 for 16 bits (and for any values above 255), 1.0 for float
    values that all lie in [0, 1] (float TIFFs from numpy, GIMP or Photoshop are 0-1), else 255."""
    if not (img.mode.startswith("I") or img.mode == "F"):
        return img
    arr = np.asarray(img, dtype=np.float64)
    top = arr.max(initial=0)
    if img.mode.startswith("I;16") or top > 255:
        white = 65535.0
    elif img.mode == "F" and top <= 1.0 and arr.min(initial=0) >= 0.0:
        white = 1.0
    else:
        white = 255.0
    return Image.fromarray(np.clip(arr / white * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
