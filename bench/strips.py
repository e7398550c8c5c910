"""Seconds per work unit of the photo denoiser: a photo against thin strips, in-process.

    python -m bench.strips [--checkpoints checkpoints] [--repeats 3]

Loads ``photo-denoiser`` as the service does, with one torch thread, and denoises a gray 600x600
photo, 1x65535 and 65535x1 strips and 16x4096 and 4096x16 strips in turn, round by round, with
``denoise_image`` (the model's work alone: no HTTP, no PNG). For each image: the median seconds,
the cost admission charges (``denoise_cost``: pixels decoded plus ``work_pixels``), and the cost
as it was counted before the convolutions' padding was (pixels decoded plus the pixels of the tiles
the network's first layer is given, recorded with a forward hook), each as seconds per
megapixel-equivalent, of the whole cost and of its network share (the cost less the pixels
decoded, which ``denoise_image`` does not do). Writes the table and the raw numbers to ``--out``.
Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from app.metrics import Metrics
from app.registry import load_model
from app.settings import Settings
from bench.report import save
from bench.run import ROOT
from model.photo.inference import denoise_image, network_for

SIZES = [(600, 600), (1, 65535), (65535, 1), (16, 4096), (4096, 16)]  # (width, height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    settings = Settings(torch_threads=1)
    torch.set_num_threads(1)
    served = load_model(args.checkpoints / "photo-denoiser", settings, Metrics())
    net = network_for(served.model, 1)
    first_layer = [0]
    net.head.register_forward_pre_hook(
        lambda _m, inputs: first_layer.__setitem__(0, first_layer[0] + inputs[0][:, 0].numel()))
    images = {size: torch.rand(1, 1, size[1], size[0], generator=torch.Generator().manual_seed(0))
              for size in SIZES}
    seconds: dict[tuple[int, int], list[float]] = {size: [] for size in SIZES}
    tiles: dict[tuple[int, int], int] = {}
    with torch.inference_mode():
        denoise_image(served.model, torch.rand(1, 1, 64, 64))  # warm-up
        for _ in range(args.repeats):
            for size, x in images.items():
                first_layer[0] = 0
                tick = time.perf_counter()
                denoise_image(served.model, x)
                seconds[size].append(time.perf_counter() - tick)
                tiles[size] = first_layer[0]

    rows: list[dict[str, Any]] = []
    for (width, height), times in seconds.items():
        pixels = width * height
        after = served.denoise_cost(width, height, 1) or 0
        before = pixels + tiles[width, height]
        s = statistics.median(times)
        rows.append({"image": f"{width}x{height}", "seconds": times, "median_s": s,
                     "cost_before": before, "cost_after": after,
                     "s_per_mpx_eq_before": s / before * 1e6, "s_per_mpx_eq_after": s / after * 1e6,
                     "s_per_network_mpx_eq_before": s / (before - pixels) * 1e6,
                     "s_per_network_mpx_eq_after": s / (after - pixels) * 1e6})
    lines = [f"Photo denoiser (gray network), in-process, one torch thread, {os.cpu_count()} cores; "
             f"medians of {args.repeats}, images in turn round by round.", "",
             "| image (w×h) | median s | cost before | s per Mpx-eq. before (network's share) | "
             "cost after | s per Mpx-eq. after (network's share) |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['median_s']:.2f} | {r['cost_before'] / 1e6:.3f} | "
                     f"{r['s_per_mpx_eq_before']:.1f} ({r['s_per_network_mpx_eq_before']:.1f}) | "
                     f"{r['cost_after'] / 1e6:.3f} | "
                     f"{r['s_per_mpx_eq_after']:.1f} ({r['s_per_network_mpx_eq_after']:.1f}) |")
    table = "\n".join(lines)
    print(table)
    save(args.out, "strips", table, rows)


if __name__ == "__main__":
    main()
