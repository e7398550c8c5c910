"""The photo evaluation's table (markdown) and figure (noisy / model / BM3D / clean crops)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# dB, from the papers (BSD68 gray, CBSD68 colour), the papers' protocol; each set's methods in the
# order of the table's published columns (BM3D or CBM3D, DnCNN-B or CDnCNN-B, DRUNet)
PUBLISHED: dict[str, dict[str, dict[int, float]]] = {
    "bsd68": {"BM3D": {15: 31.07, 25: 28.57, 50: 25.62}, "DnCNN-B": {15: 31.61, 25: 29.16, 50: 26.23},
              "DRUNet": {15: 31.91, 25: 29.48, 50: 26.59}},
    "cbsd68": {"CBM3D": {15: 33.52, 25: 30.71, 50: 27.38}, "CDnCNN-B": {15: 33.89, 25: 31.23, 50: 27.92}},
}
TITLES = {"sets": "Papers' protocol (noise not clipped)",
          "sets_8bit": "8-bit protocol (noisy input clipped and rounded to 8 bits, as users send)"}


def save_figure(rows: list[list[np.ndarray]], path: Path, crop: int = 160) -> None:
    from PIL import Image

    tiles = []
    for row in rows:
        cells = []
        for img in row:
            arr = np.clip(np.round(img[:, :crop, :crop] * 255.0), 0, 255).astype(np.uint8)
            arr = np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr
            cells.append(np.pad(arr, ((0, 0), (2, 2), (2, 2)), constant_values=255))
        tiles.append(np.concatenate(cells, axis=2))
    width = max(t.shape[2] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, 0), (0, width - t.shape[2])), constant_values=255) for t in tiles]
    Image.fromarray(np.concatenate(tiles, axis=1).transpose(1, 2, 0)).save(path)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def table(results: dict[str, Any], published: bool) -> list[str]:
    lines = ["| set | σ | model, blind (all) | model, σ given (all) | σ estimated (max error) "
             "| model, blind (BM3D subset) | BM3D told σ (subset) "
             + ("| BM3D published | DnCNN-B published | DRUNet published |" if published else "|"),
             "|---|---|---|---|---|---|---|" + ("---|---|---|" if published else "")]
    for name, per_sigma in results.items():
        columns = list(PUBLISHED.get(name, {}).values())
        columns += [{}] * (3 - len(columns))
        for key, r in per_sigma.items():
            s = int(float(key))
            subset = f"{r['model_blind_on_bm3d_subset']:.2f}" if "bm3d" in r else "–"
            bm = f"{r['bm3d']:.2f} (first {r['bm3d_images']})" if "bm3d" in r else "–"
            err = r.get("sigma_estimate_max_rel_error")
            mean = r.get("sigma_estimate_mean")
            est = "–" if mean is None else f"{mean:.1f}" + ("" if err is None else f" ({100 * err:.0f} %)")
            line = (f"| {name.upper()} ({r['images']}) | {s} | {r['model_blind']:.2f} "
                    f"| {_num(r['model_known_sigma'])} | {est} | {subset} | {bm} |")
            if published:
                line += " " + " | ".join(_num(c.get(s)) for c in columns) + " |"
            lines.append(line)
    return lines


def markdown(metrics: dict[str, Any]) -> str:
    lines: list[str] = []
    for key, title in TITLES.items():
        if key in metrics:
            lines += [f"{title}:", "", *table(metrics[key], published=key == "sets"), ""]
    sp = metrics["speed_ms_per_mpx"]
    size = f"{sp['size']}×{sp['size']}"
    where = f"{sp['threads']} CPU threads" if sp.get("device", "cpu") == "cpu" else sp["device"]
    lines += [f"Speed, in-process ({where}, {size}): "
              f"gray {sp['gray']:.0f} ms/MP, colour {sp['rgb']:.0f} ms/MP."]
    for dev, other in metrics.get("speed_elsewhere", {}).items():
        lines.append(f"On {dev} (the quality run): gray {other['gray']:.1f} ms/MP, "
                     f"colour {other['rgb']:.1f} ms/MP.")
    return "\n".join(lines) + "\n"
