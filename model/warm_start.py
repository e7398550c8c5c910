"""``--init-from``: start a run from a checkpoint's weights and carry its chain of runs forward.

The network must have the checkpoint's shapes, with one exception: a gray photo checkpoint (1
channel) can start a colour network (3 channels) of the same widths. Its first layer then reads the
mean of R, G and B (each input weight divided by three) and its last layer writes the same noise
estimate to each channel, so the colour network starts as the gray one applied to luminance. A gray
photo checkpoint that carries its own colour network (``colour/``, ``model.photo.pair``) gives a
colour run that one instead: the shipped colour weights, not the gray ones widened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.checkpoint import CONFIG_FILE, load_checkpoint, read_meta
from model.cli import UsageError
from model.photo.pair import COLOUR_DIR, load_photo
from model.train_state import STATE_DIR

HEAD, TAIL = "head.0.weight", ("tail.weight", "tail.bias")


def warm_start(model: nn.Module, folder: Path, channels: int) -> dict[str, Any]:
    """Copy the weights of the checkpoint in ``folder`` into ``model``; returns what to record.

    The record: the checkpoint's path and weights' sha256, and its chain of runs, oldest first:
    each run's command, steps and the sha256 of the weights it started from (None: fresh).
    """
    if not (folder / CONFIG_FILE).is_file() and (folder / STATE_DIR / "state.json").is_file():
        raise UsageError(f"--init-from {folder}: no checkpoint there yet, only a training state (its "
                         "run stopped before its first validation): continue that run with "
                         f"--resume --out {folder}")
    folder = network_folder(folder, channels)
    ck = load_checkpoint(folder)
    state = ck.model.state_dict()
    target = model.state_dict()
    if set(state) != set(target):
        raise UsageError(f"--init-from {folder}: its network has other layers than this preset's "
                         f"(checkpoint: {ck.meta.get('kind')}, hidden {ck.config.model.hidden})")
    old_c = ck.config.model.channels
    for key, value in target.items():
        weights = state[key]
        if weights.shape != value.shape and old_c == 1 and channels == 3:
            weights = widen(key, weights, value.shape)
        if weights.shape != value.shape:
            raise UsageError(f"--init-from {folder}: {key} is {tuple(weights.shape)} there, "
                             f"{tuple(value.shape)} here (other widths or channels)")
        with torch.no_grad():
            value.copy_(weights)
    training = ck.meta.get("training", {})
    chain = list(training.get("chain") or [{  # a checkpoint from before chains were recorded
        "command": training.get("command"), "steps": training.get("steps"), "init_from": None,
    }])
    return {"path": str(folder), "weights_sha256": ck.sha256, "chain": chain}


def network_folder(folder: Path, channels: int) -> Path:
    """The checkpoint folder whose network starts a run of ``channels``: a paired photo checkpoint's
    colour network (verified against its pin) for a colour run, else ``folder`` itself."""
    pin = read_meta(folder).get(COLOUR_DIR)
    if channels != 3 or pin is None:
        return folder
    paired = load_photo(folder)  # checks the pin: folder, weights' sha256, noise range
    return folder / str(paired.meta[COLOUR_DIR]["folder"])


def widen(key: str, weights: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A gray photo network's first or last layer, made for 3 colour channels."""
    if key == HEAD and weights.shape[1] + 2 == shape[1]:  # [gray, flag, level] -> [r, g, b, flag, level]
        return torch.cat([weights[:, :1].repeat(1, 3, 1, 1) / 3.0, weights[:, 1:]], dim=1)
    if key in TAIL and weights.shape[0] == 1 and shape[0] == 3:
        return weights.repeat(3, *([1] * (weights.dim() - 1)))
    return weights


def chain_of(record: dict[str, Any] | None, command: str, steps: int) -> list[dict[str, Any]]:
    """The chain a checkpoint records: the runs before this one (from ``--init-from``), then it."""
    before = record["chain"] if record else []
    return [*before, {"command": command, "steps": steps,
                      "init_from": record["weights_sha256"] if record else None}]
