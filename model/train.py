"""Train a preset and write a checkpoint folder the service loads unchanged.

    python -m model.train --preset mnist-dae --data-dir "$DATA/mnist" --out runs/mnist-dae
    python -m model.train --preset photo-color --data-dir "$DATA/cbsd432" "$DATA/train400" \
        --init-from checkpoints/photo-denoiser --out runs/photo-color
    torchrun --nproc_per_node=2 -m model.train --preset mnist-vae ...   # DistributedDataParallel

``--out`` receives the best model (by validation loss) as ``config.json`` + ``model.safetensors``;
``--out/.state/`` holds the last training state (weights, optimiser, step, each rank's RNG, and the
run's config and command) for ``--resume``, which refuses to continue it with another config; a run
without ``--resume`` refuses an ``--out`` that holds a state or a checkpoint.
``--init-from CHECKPOINT`` starts from a checkpoint's weights (a gray photo checkpoint can start a
colour network) and the new config.json records the chain of runs and their steps.
Every write is atomic and Ctrl-C is held back while writing, so an interrupt never tears a file.
Mistakes (missing data, unknown preset, bad value, a batch larger than the data, no GPU, a --resume
that does not match) answer in one line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model.cli import (
    Parser,
    UsageError,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    run,
)
from model.presets import refuse_other_kinds_flags

PROG = "python -m model.train"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True,
                   help="mnist-dae, mnist-vae, photo-denoiser, photo-gray or photo-color")
    p.add_argument("--data-dir", required=True, type=Path, nargs="+",
                   help="data folder (photo presets: one or more folders of images)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--max-steps", type=nonnegative_int, help="stop after this many optimiser steps")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--patches-per-epoch", type=positive_int,
                   help="photo presets only: patches drawn per epoch")
    p.add_argument("--sigma-weight-floor", type=nonnegative_float,
                   help="photo presets only: weigh each patch's MSE by 1/(sigma + this), 0-1 scale "
                   "(0: plain MSE)")
    p.add_argument("--seed", type=nonnegative_int)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in --out/.state (the same flags; only --epochs, "
                   "--max-steps, --time-budget, --save-every, --threads, --no-progress and --data-dir "
                   "may change)")
    p.add_argument("--init-from", type=Path, metavar="CHECKPOINT",
                   help="start from this checkpoint's weights; config.json records the chain")
    p.add_argument("--limit", type=nonnegative_int, default=0,
                   help="train on the first N images (smoke runs)")
    p.add_argument("--save-every", type=positive_int, default=500,
                   help="save training state every N steps")
    p.add_argument("--threads", type=nonnegative_int, default=0,
                   help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--time-budget", type=nonnegative_float, default=0.0,
                   help="seconds (0: none): after a calibration phase, cut --epochs to the whole "
                   "epochs that fit (the checkpoint records the equivalent --epochs command)")
    arch = p.add_argument_group("architecture overrides (default: the preset's)")
    arch.add_argument("--hidden", type=positive_int, nargs="+", help="channel width of each stage")
    arch.add_argument("--extra-convs", type=nonnegative_int,
                      help="3x3 convs added to each stage (mnist-dae, mnist-vae only)")
    arch.add_argument("--latent-dim", type=positive_int,
                      help="size of the latent vector (mnist-dae, mnist-vae only)")
    args = p.parse_args(argv)
    if args.resume and args.init_from:
        raise UsageError("--resume continues --out's own state; it cannot be combined with --init-from")
    refuse_other_kinds_flags(args)
    return args


def train(argv: list[str] | None = None) -> int:
    """Parse, then: set up the processes, load the data, build the network, fit, report."""
    args = parse_args(argv)  # no torch yet: --help and flag mistakes answer at once
    try:
        from model.trainer import Trainer  # torch from here on

        trainer = Trainer.set_up(args, argv)  # device, processes, threads, the run's config
        trainer.load_data()  # the task: its batches, its loss, its validation
        trainer.build()  # the network (fresh, --init-from or --resume) and its optimiser
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the first step: nothing to save
        print(f"{PROG}: interrupted before training started; nothing was written", file=sys.stderr)
        return 130
    return trainer.fit()  # the loop: steps, budget, validation, best checkpoint, state


def main(argv: list[str] | None = None) -> int:
    return run(PROG, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
