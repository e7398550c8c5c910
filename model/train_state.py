"""The training state behind ``--resume``: weights, optimiser and RNG as safetensors, the rest JSON.

No pickle: tensors go to ``state.safetensors``, scalars and the run's bookkeeping to ``state.json``,
each written atomically with Ctrl-C held back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from model.checkpoint import atomic_save_tensors, atomic_write_bytes, deferred_interrupt
from model.cli import UsageError

STATE_DIR = ".state"


def save_state(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, info: dict[str, Any],
               gen: torch.Generator) -> None:
    """Weights, optimiser tensors and RNG as safetensors; the rest as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    opt_state = opt.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, slots in opt_state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tensors["rng"] = gen.get_state()
    info = {**info, "param_groups": opt_state["param_groups"], "opt_scalars": scalars}
    with deferred_interrupt():
        atomic_save_tensors(folder / "state.safetensors", tensors)
        atomic_write_bytes(folder / "state.json", json.dumps(info, indent=1).encode())


def load_state(folder: Path, model: nn.Module, opt: torch.optim.Optimizer,
               gen: torch.Generator) -> dict[str, Any]:
    """Restore what ``save_state`` wrote; returns the bookkeeping (step, epoch, history, ...)."""
    if not (folder / "state.json").is_file():
        raise UsageError(f"--resume: no training state in {folder}")
    info: dict[str, Any] = json.loads((folder / "state.json").read_text())
    tensors = load_file(folder / "state.safetensors")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, slot = key.split(".", 2)
            state.setdefault(int(idx), {})[slot] = value
    for idx, slots in info["opt_scalars"].items():
        state.setdefault(int(idx), {}).update(slots)
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    gen.set_state(tensors["rng"])
    return info
