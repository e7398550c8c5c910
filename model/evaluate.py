"""Evaluate a checkpoint on its test data and write metrics.json, a markdown table and figures.

    python -m model.evaluate --checkpoint checkpoints/mnist-dae --data-dir "$DATA/mnist" --out eval/dae
    python -m model.evaluate --checkpoint checkpoints/photo-denoiser --data-dir "$DATA/bsd68" \
        --color-data-dir "$DATA/cbsd68" --out eval/photo --bm3d-limit 20

The checkpoint's kind picks the evaluation: DAE (PSNR/SSIM beside a median filter and BM3D), VAE
(importance-weighted NLL), photo denoiser (BSD68 and CBSD68, the papers' protocol and the 8-bit one,
beside BM3D/CBM3D told sigma). ``--update-checkpoint`` records the metrics and this exact command in
the checkpoint's config.json. Mistakes (missing data or checkpoint, bad value, no GPU) answer in
one line and exit code 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from model.cli import (
    Parser,
    UsageError,
    nonnegative_float,
    nonnegative_int,
    output_folder,
    positive_int,
    run,
)
from model.kinds import KINDS, kind_spec, resolve

PROG = "python -m model.evaluate"


# every flag that takes noise levels for one kind or another, each once
FLAGS_WITH_LEVELS = tuple(dict.fromkeys(
    flag for spec in KINDS.values() if spec.noise_scale is not None
    for flag in spec.noise_scale.flags))


def check_sigmas(args: argparse.Namespace, kind: str) -> None:
    """``UsageError`` for a noise level off the checkpoint's scale (``KindSpec.noise_scale``), or
    given to a kind that takes none."""
    scale = KINDS[kind].noise_scale
    for flag in FLAGS_WITH_LEVELS:
        values = getattr(args, flag[2:].replace("-", "_"))
        if values is None:
            continue
        if scale is None:
            raise UsageError(f"{flag}: a {kind} checkpoint is evaluated without added noise "
                             "(it takes no noise levels)")
        if flag not in scale.flags:
            raise UsageError(f"{flag} does not apply to a {kind} checkpoint (its noise levels: "
                             f"{', '.join(scale.flags)})")
        for value in values:
            if scale.low <= value <= scale.high:
                continue
            other, factor = scale.other
            hint = (f"; {value:g} on the {other} scale is {value * factor:.3g} on the {scale.name} one"
                    if scale.low <= value * factor <= scale.high else "")
            raise UsageError(f"{flag} {value:g}: a {kind} checkpoint's noise levels are on the "
                             f"{scale.name} scale, {scale.low:g} to {scale.high:g} (e.g. "
                             f"{scale.examples}){hint}")


def check_kind_flags(args: argparse.Namespace, kind: str) -> None:
    """``UsageError`` naming the first flag given (a value other than its default) that a ``kind``
    checkpoint does not read (``KindSpec.evaluate_flags``)."""
    parser = make_parser()
    for dest in dict.fromkeys(dest for spec in KINDS.values() for dest in spec.evaluate_flags):
        value = getattr(args, dest)
        if dest in KINDS[kind].evaluate_flags or value == parser.get_default(dest):
            continue
        flag = "--" + ("no-" if value is False else "") + dest.replace("_", "-")
        takers = [other for other, spec in KINDS.items() if dest in spec.evaluate_flags]
        raise UsageError(f"{flag} does not apply to a {kind} checkpoint; it is for "
                         f"{' and '.join(takers)} checkpoints")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = make_parser()
    args = p.parse_args(argv)
    if args.data_dir is None and not args.speed_only:
        p.error("the following argument is required: --data-dir")
    return args


def make_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--data-dir", type=Path,
                   help="test data: the MNIST folder, or BSD68 (gray) for a photo denoiser "
                   "(required, except with --speed-only)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--limit", type=nonnegative_int, default=0, help="only the first N test images")
    p.add_argument("--sigmas", type=nonnegative_float, nargs="+",
                   help="noise levels on the checkpoint's scale: DAE [0, 1] (0 to 1, default 0.1 0.3 "
                   "0.5), photo 0-255 (1 to 255, default 15 25 50); a level off that scale is "
                   "refused, not converted; a VAE takes none")
    p.add_argument("--bm3d-limit", type=nonnegative_int,
                   help="BM3D on the first N images; DAE: default 300, 0 = none; photo: default "
                   "and 0 = all")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="default: auto (DAE, VAE), cpu (photo: its speed is that device's)")
    p.add_argument("--threads", type=nonnegative_int, default=0)
    p.add_argument("--update-checkpoint", action="store_true", help="write metrics to config.json")
    vae = p.add_argument_group("VAE")
    vae.add_argument("--k", type=positive_int, default=1000, help="importance samples for the NLL")
    vae.add_argument("--k-big", type=positive_int, default=5000, help="importance samples on the subset")
    vae.add_argument("--k-big-images", type=nonnegative_int, default=1000,
                     help="subset size for --k-big (0: skip)")
    photo = p.add_argument_group("photo denoiser")
    photo.add_argument("--color-data-dir", type=Path, help="CBSD68 (colour)")
    photo.add_argument("--color-sigmas", type=nonnegative_float, nargs="+",
                       help="noise levels for CBSD68, 0-255 scale (default: --sigmas)")
    photo.add_argument("--protocols", nargs="+", choices=["papers", "8bit"], default=["papers", "8bit"],
                       help="papers: unclipped noise; 8bit: noisy input clipped and rounded")
    photo.add_argument("--bm3d", action=argparse.BooleanOptionalAction, default=True)
    photo.add_argument("--known-sigma", action=argparse.BooleanOptionalAction, default=True,
                       help="also run the model told the true sigma")
    photo.add_argument("--bm3d-workers", type=positive_int, default=1, help="BM3D worker processes")
    photo.add_argument("--bm3d-cache", type=Path, metavar="FILE",
                       help="a JSON file of BM3D's scores: reused where the inputs are the same "
                       "(another checkpoint, same images and noise), and every new one added")
    photo.add_argument("--speed-size", type=positive_int, default=1024,
                       help="side of the timed square image")
    photo.add_argument("--speed-only", action="store_true",
                       help="time the model on --device and add that to --out/metrics.json (the "
                       "quality figures of an earlier run stay; the earlier speed moves to "
                       "speed_elsewhere)")
    return p


def evaluate(argv: list[str] | None = None) -> int:
    args = parse_args(argv)  # no torch yet: --help and flag mistakes answer at once
    from model.checkpoint import read_meta

    command = f"{PROG} " + shlex.join(sys.argv[1:] if argv is None else argv)
    kind = str(read_meta(args.checkpoint).get("kind"))
    try:
        spec = kind_spec(kind)
    except ValueError as exc:
        raise UsageError(f"{args.checkpoint}: {exc}") from exc
    check_sigmas(args, kind)
    check_kind_flags(args, kind)
    output_folder(args.out)
    evaluate_kind: Callable[[argparse.Namespace, str], int] = resolve(spec.evaluate)
    return evaluate_kind(args, command)


def main(argv: list[str] | None = None) -> int:
    return run(PROG, evaluate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
