"""A run's plan in steps: how many it takes, the learning rate at each, and the command that trains
the run as it ended (the epochs and step limit a time budget or a ``--resume`` changed)."""

from __future__ import annotations

import math

from model.config import RunConfig


def planned_steps(cfg: RunConfig, steps_per_epoch: int) -> int:
    """Optimiser steps the run will take: its epochs, capped by ``max_steps`` when set."""
    total = cfg.train.epochs * steps_per_epoch
    return min(total, cfg.train.max_steps) if cfg.train.max_steps else total


def recorded_command(argv: list[str], replace: dict[str, str], drop: tuple[str, ...] = ()) -> list[str]:
    """``argv`` without the flags of ``replace`` and ``drop`` (and their values), then ``replace``'s."""
    gone = {*replace, *drop}
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in gone:
            skip = True
        elif arg.split("=", 1)[0] not in gone:
            out.append(arg)
    for flag, value in replace.items():
        out += [flag, value]
    return out


def lr_at(cfg: RunConfig, step: int, total: int) -> float:
    """Linear warm-up over ``lr_warmup_steps``, then cosine decay to ``lr_min``."""
    t, warm = cfg.train, cfg.train.lr_warmup_steps
    if step < warm:
        return t.lr * (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return t.lr_min + 0.5 * (t.lr - t.lr_min) * (1.0 + math.cos(math.pi * progress))
