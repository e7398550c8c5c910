"""The photo denoiser on a CPU with its weights channels-last (as ``load_photo`` lays them out)
against the same weights in torch's default layout, side by side in one run.

    python -m bench.memory_format [--checkpoint checkpoints/photo-denoiser] [--size 512] [--rounds 5]

For a gray and an RGB ``size`` x ``size`` noisy image, on one torch thread and on all of them, each
round times one ``denoise_image`` call per layout, the two alternating; reports the medians in
seconds per megapixel and their ratio, and checks that the two layouts give the same pixels. Not
part of CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from bench.photo import noisy_photo
from bench.report import save
from bench.run import ROOT
from model.photo.inference import denoise_image
from model.photo.pair import load_photo

LAYOUTS = {"channels-last": torch.channels_last, "default (NCHW)": torch.contiguous_format}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "photo-denoiser")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    model = load_photo(args.checkpoint).model
    megapixels = args.size * args.size / 1e6
    rows, lines = [], []
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        for channels, label in ((1, "gray"), (3, "RGB")):
            image = noisy_photo(args.size, channels)
            planes = image[None] if channels == 1 else image.transpose(2, 0, 1)
            x = torch.from_numpy(planes.copy()).float().div(255)[None]
            seconds: dict[str, list[float]] = {name: [] for name in LAYOUTS}
            outputs: dict[str, torch.Tensor] = {}
            with torch.inference_mode():
                for _ in range(args.rounds):
                    for name, layout in LAYOUTS.items():
                        model.to(memory_format=layout)  # type: ignore[call-overload]
                        start = time.perf_counter()
                        outputs[name] = denoise_image(model, x)[0]
                        seconds[name].append(time.perf_counter() - start)
            per_mp = {name: statistics.median(s) / megapixels for name, s in seconds.items()}
            fast, slow = per_mp["channels-last"], per_mp["default (NCHW)"]
            diff = float((outputs["channels-last"] - outputs["default (NCHW)"]).abs().max())
            rows.append({"threads": threads, "image": label, "size": args.size, "seconds": seconds,
                         "s_per_mp": per_mp, "max_abs_diff": diff})
            lines.append(f"| {threads} | {label} | {fast:.2f} | {slow:.2f} | {fast / slow:.2f} | "
                         f"{diff:.1e} |")
    table = "\n".join([
        f"Photo denoiser, {args.size}² noisy image, medians of {args.rounds} alternating rounds, "
        f"torch {torch.__version__}, {os.cpu_count()} cores.",
        "",
        "| threads | image | channels-last s/MP | default s/MP | ratio | max abs diff |",
        "|---:|---|---:|---:|---:|---:|",
        *lines,
    ])
    print(table)
    print(save(args.out, "memory-format", table, rows))


if __name__ == "__main__":
    main()
