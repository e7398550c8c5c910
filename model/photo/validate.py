"""Score photo checkpoints on a training run's validation split, through the inference path.

Chooses between checkpoints (two runs, two windows, a gray network's five passes on colour against a
colour network's one) without looking at a test set::

    python -m model.photo.validate --data-dir runs/data/cbsd432 --channels 3 \\
        --checkpoint checkpoints/photo-denoiser runs/gpu-photo/home/color

The split is the one ``model.train`` holds out of the same folders (``PhotoTask``: the first
``--val-fraction`` of a fixed permutation of their images), the noise the one its validation draws
(sigma 15, 25 and 50, unclipped and 8-bit). Every checkpoint denoises blind through
``denoise_image``, as the service does, so the figures compare networks of either kind; a
checkpoint trained on some of these images scores too high, so give the split of the run you want to
judge.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch

from model.cli import Parser, fraction, nonnegative_int, run
from model.photo.inference import denoise_image, sigma_cap
from model.photo.pair import load_photo
from model.photo.preset import photo_color_preset, photo_gray_preset
from model.photo.task import PhotoTask

PROG = "python -m model.photo.validate"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, nargs="+", required=True,
                        help="the training folders, in the order the run was given them")
    parser.add_argument("--channels", type=int, choices=(1, 3), required=True,
                        help="how the run loaded them: 1 gray, 3 RGB")
    parser.add_argument("--val-fraction", type=fraction, default=0.05)
    parser.add_argument("--checkpoint", type=Path, nargs="+", required=True)
    parser.add_argument("--threads", type=nonnegative_int, default=0)
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def blind_denoise(model: torch.nn.Module, cap: float, noisy: torch.Tensor) -> torch.Tensor:
    """The denoised image of ``denoise_image`` (blind, the level capped at ``cap``)."""
    return denoise_image(model, noisy, cap=cap)[0]


def score_checkpoints(args: argparse.Namespace) -> dict[str, Any]:
    """{"split": ..., "checkpoints": {folder: validation metrics}}."""
    cfg = photo_color_preset() if args.channels == 3 else photo_gray_preset()
    cfg.train.val_fraction = args.val_fraction
    task = PhotoTask(cfg, list(args.data_dir), torch.device("cpu"))
    results: dict[str, Any] = {"split": task.data_description, "checkpoints": {}}
    for folder in args.checkpoint:
        ckpt = load_photo(folder, "cpu")
        metrics = task.score(partial(blind_denoise, ckpt.model, sigma_cap(ckpt.config)))
        results["checkpoints"][str(folder)] = {"sha256": ckpt.sha256, **metrics}
        print(f"{folder}: val_loss {metrics['val_loss']:.3f}", file=sys.stderr)
    return results


def validate(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = score_checkpoints(args)
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Missing data or a checkpoint that is not there is one line and exit code 2 (``model.cli``)."""
    return run(PROG, validate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
