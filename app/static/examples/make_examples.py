"""Draw the demo page's example images with numpy: no photographs, nothing downloaded.

Run from the repository root: ``python app/static/examples/make_examples.py``. The output is
deterministic (fixed seeds), so the committed PNGs are exactly what this script writes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SS = 8  # supersampling factor for the digit strokes

Stroke = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 40) -> Stroke:
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + rx * float(np.cos(a)), cy + ry * float(np.sin(a))) for a in t]


DIGITS: dict[str, list[Stroke]] = {  # strokes in a 20x20 box, (x, y), y down
    "2": [[*_arc(10, 6.5, 6, 5, 200, 380), (4.5, 18.5)], [(4.5, 18.5), (16.5, 18.5)]],
    "3": [_arc(9.5, 5.8, 5.5, 4.6, 200, 450), _arc(9.5, 14.2, 6.2, 5, 270, 520)],
    "7": [[(3.5, 2.5), (16.5, 2.5), (8.5, 18.5)], [(7, 10.5), (14, 10.5)]],
    "0": [_arc(10, 10, 5.8, 8.5, 0, 360, 80)],
}


def _distance_to_segment(px: np.ndarray, py: np.ndarray, a: tuple[float, float],
                         b: tuple[float, float]) -> np.ndarray:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    return np.hypot(px - (ax + t * dx), py - (ay + t * dy))


def digit(strokes: list[Stroke], width: float = 1.25) -> Image.Image:
    """An MNIST-like digit: anti-aliased strokes in a 20x20 box, centred by mass in 28x28."""
    n = 20 * SS
    py, px = (np.mgrid[0:n, 0:n] + 0.5) / SS
    dist = np.full((n, n), np.inf)
    for stroke in strokes:
        for a, b in itertools.pairwise(stroke):
            dist = np.minimum(dist, _distance_to_segment(px, py, a, b))
    ink = np.clip(width + 0.5 - dist, 0.0, 1.0)
    box = Image.fromarray((ink * 255).astype(np.uint8), "L").resize((20, 20), Image.Resampling.BOX)
    arr = np.asarray(box, dtype=np.float64)
    ys, xs = np.mgrid[0:20, 0:20]
    cy, cx = (arr * ys).sum() / arr.sum(), (arr * xs).sum() / arr.sum()
    out = np.zeros((28, 28))
    oy, ox = round(14 - cy - 0.5), round(14 - cx - 0.5)
    out[oy : oy + 20, ox : ox + 20] = arr
    return Image.fromarray(out.astype(np.uint8), "L")


def _fractal_1d(n: int, rng: np.random.Generator, roughness: float = 0.55) -> np.ndarray:
    """A ridge line by summing octaves of smoothly interpolated random values."""
    out = np.zeros(n)
    amp, cells = 1.0, 4
    for _ in range(7):
        knots = rng.uniform(-1, 1, cells + 1)
        out += amp * np.interp(np.linspace(0, cells, n), np.arange(cells + 1), knots)
        amp *= roughness
        cells *= 2
    return out


def _value_noise(h: int, w: int, rng: np.random.Generator, cells: int) -> np.ndarray:
    grid = rng.uniform(0, 1, (cells + 1, cells + 1))
    img = Image.fromarray((grid * 255).astype(np.uint8), "L").resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float64) / 255.0


def landscape(w: int = 360, h: int = 240, seed: int = 7) -> Image.Image:
    """A synthetic colour scene: sky, sun, clouds, two mountain ranges, a lake, a meadow."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = yy / h
    img = np.empty((h, w, 3))
    img[...] = (np.array([70, 120, 200]) * (1 - t[..., None]) + np.array([235, 200, 170]) * t[..., None])
    sun = np.hypot(xx - 0.72 * w, yy - 0.28 * h)
    img += (np.clip(1.0 - sun / 20, 0, 1) ** 0.5)[..., None] * np.array([40, 50, 20])
    img += (np.exp(-((sun / 60) ** 2)) * 35)[..., None]
    clouds = _value_noise(h, w, rng, 9) * _value_noise(h, w, rng, 23)
    img += (np.clip(clouds - 0.35, 0, 1) * 260 * (1 - t) ** 2)[..., None]
    horizon = 0.62 * h
    for depth, (base, colour) in enumerate([(0.38, (112, 118, 150)), (0.48, (58, 82, 70))]):
        ridge = base * h + (22 - 8 * depth) * _fractal_1d(w, rng)
        mask = yy > ridge[None, :]
        shade = 0.85 + 0.3 * _value_noise(h, w, rng, 40)
        img[mask] = (np.array(colour)[None, :] * shade[mask][:, None])
    lake = yy > horizon
    ripple = 0.9 + 0.1 * np.sin(yy * 1.7 + 3 * _value_noise(h, w, rng, 30))
    mirror = np.clip((2 * horizon - yy).astype(int), 0, h - 1)
    img[lake] = img[mirror[lake], xx[lake].astype(int)] * 0.75 * ripple[lake][:, None] + np.array(
        [10, 25, 40]
    )
    meadow = yy > horizon + 18 + 10 * _fractal_1d(w, rng)[None, :]
    grass = 0.7 + 0.5 * _value_noise(h, w, rng, 90) * _value_noise(h, w, rng, 17)
    img[meadow] = np.array([70, 120, 45])[None, :] * grass[meadow][:, None]
    for x0 in rng.integers(10, w - 10, 9):  # a few pines
        top = int(horizon + 8 + rng.integers(0, 20))
        height = int(rng.integers(20, 40))
        rows = np.arange(top, min(top + height, h))
        for r in rows:
            half = int((r - top) * 0.35) + 1
            img[r, max(x0 - half, 0) : x0 + half] = (25, 55, 30)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def still_life(size: int = 256, seed: int = 3) -> Image.Image:
    """A synthetic gray scene with edges, gradients and fine texture: what denoisers find hard."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = 90 + 80 * (xx / size) + 25 * _value_noise(size, size, rng, 8)
    table = yy > 0.68 * size
    img[table] = 60 + 35 * _value_noise(size, size, rng, 60)[table] + 12 * np.sin(xx[table] / 2.5)
    for cx, cy, r, level in [(0.3, 0.52, 0.2, 210), (0.7, 0.58, 0.14, 40), (0.52, 0.66, 0.07, 150)]:
        d = np.hypot(xx - cx * size, yy - cy * size) / (r * size)
        shade = level + 50 * np.clip(1 - np.hypot(xx - (cx - r / 3) * size, yy - (cy - r / 3) * size)
                                     / (r * size), 0, 1)
        img = np.where(d < 1, shade, img)
        img = np.where(np.abs(d - 1) < 0.04, 20, img)
    stripes = (xx > 0.08 * size) & (xx < 0.22 * size) & (yy > 0.1 * size) & (yy < 0.4 * size)
    img[stripes] = 128 + 100 * np.sign(np.sin(yy[stripes] * np.pi / 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L")


def main() -> None:
    for name, strokes in DIGITS.items():
        digit(strokes).save(HERE / f"digit-{name}.png", optimize=True)
    still_life().save(HERE / "still-life.png", optimize=True)
    landscape().save(HERE / "landscape.png", optimize=True)


if __name__ == "__main__":
    main()
