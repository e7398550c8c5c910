"""The training state behind ``--resume``: weights, optimiser and RNG as safetensors, the rest JSON.

No pickle: tensors go to ``state.safetensors``, scalars and the run's bookkeeping to ``state.json``,
each written atomically with Ctrl-C held back. The RNG is one row per process (rank), so that every
rank of a resumed DistributedDataParallel run draws its own stream again. ``state.json`` also holds
the run as it started (its config, the data's fingerprint and limit, world size and device type, and
its command line): ``--resume`` refuses a command that would train another run, on other data
included (the same data in another place is fine), and the checkpoint records the command of the
run as started, which trains it from scratch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from model.checkpoint import atomic_save_tensors, atomic_write_bytes, check_tensors, deferred_interrupt
from model.cli import UsageError
from model.config import RunConfig

STATE_DIR = ".state"
# what a --resume may change: how long the run trains (the time budget, the state's cadence, the
# threads and the progress bar are flags outside the config, and may change too)
RESUMABLE = ("config.train.epochs", "config.train.max_steps")


def save_state(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, info: dict[str, Any],
               rng: torch.Tensor) -> None:
    """Weights, optimiser tensors and every rank's RNG state (one row each) as safetensors; the rest
    as JSON."""
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
    tensors["rng"] = rng
    info = {**info, "param_groups": opt_state["param_groups"], "opt_scalars": scalars}
    with deferred_interrupt():
        atomic_save_tensors(folder / "state.safetensors", tensors)
        atomic_write_bytes(folder / "state.json", json.dumps(info, indent=1).encode())


def data_fingerprint(folders: list[Path]) -> list[str]:
    """Each data folder as ``"<files> files, <digest>"``: its files' paths (relative to it) and
    sizes, hashed. The same data anywhere gives the same fingerprint; a test set in place of the
    training set does not."""
    prints = []
    for folder in folders:
        files = []
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # hidden folders are not data
            at = Path(root).relative_to(folder)
            files += [((at / name).as_posix(), os.stat(os.path.join(root, name)).st_size)
                      for name in names if not name.startswith(".")]
        listing = "\n".join(f"{name}\t{size}" for name, size in sorted(files))
        prints.append(f"{len(files)} files, {hashlib.sha256(listing.encode()).hexdigest()[:16]}")
    return prints


def read_info(folder: Path) -> dict[str, Any]:
    """``folder``'s ``state.json``; ``UsageError`` naming the file when it is not a JSON object (a
    copy cut short, a full disk, a hand edit)."""
    path = folder / "state.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, str(exc)) from exc
    if not isinstance(info, dict):
        raise _damaged(path, "not a JSON object")
    return info


def _damaged(path: Path, problem: str) -> UsageError:
    return UsageError(f"{path}: the training state is damaged ({problem}); train into another "
                      f"--out, or delete {path.parent} to start the run over")


def refuse_overwrite(folder: Path) -> None:
    """A fresh run must not replace the state of another one in the same ``--out`` (``folder``
    is its ``.state``), nor a checkpoint there: its first validation would overwrite it, and a
    checkpoint without its state (a shipped one, one copied from a GPU window) has no other copy."""
    if (folder / "state.json").is_file():
        step = read_info(folder).get("step")
        raise UsageError(f"--out {folder.parent} already holds a run's training state (step {step}): "
                         "continue it with --resume, or train into another --out (or delete "
                         f"{folder} to start it over)")
    if (folder.parent / "config.json").is_file():
        raise UsageError(f"--out {folder.parent} already holds a checkpoint, which this run would "
                         "replace at its first validation: train into another --out (and copy the "
                         "result over it if it is better), or move it away first")


def resume_info(folder: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The bookkeeping saved in ``folder`` (step, epoch, history, the run as started, ...), once it is
    sure that ``run`` (this command's config and set-up) continues that run."""
    if not (folder / "state.json").is_file():
        raise UsageError(f"--resume: no training state in {folder}")
    info = read_info(folder)
    if "run" not in info:
        raise UsageError(f"--resume: the state in {folder} was saved by an older model.train that did "
                         "not record its config; train into another --out")
    try:  # a recipe field added since the state was saved: the default, which is what it trained with
        info["run"]["config"] = RunConfig.from_dict(info["run"]["config"]).to_dict()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--resume: the state in {folder} holds a config this model.train cannot read "
                         f"({exc}); train into another --out") from exc
    if "data" in run:  # a state saved before the data was fingerprinted: taken as the same data
        info["run"].setdefault("data", run["data"])
    saved, given = _flat(info["run"]), _flat(run)
    diffs = [f"{key} was {saved.get(key)!r}, now {given.get(key)!r}" for key in sorted({*saved, *given})
             if key not in RESUMABLE and saved.get(key) != given.get(key)]
    if diffs:
        raise UsageError(f"--resume: this command trains another run than the one saved in {folder}: "
                         f"{'; '.join(diffs)} (only --epochs, --max-steps, --time-budget, --save-every, "
                         "--threads, --no-progress and --data-dir may change, --data-dir to the same "
                         "data in another place)")
    return info


def load_state(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
               rank: int) -> None:
    """Restore the tensors ``save_state`` wrote: weights, optimiser and this rank's RNG. Weights of
    another dtype or shape than ``model``'s are a ``CheckpointError`` naming the tensor, as in a
    checkpoint, never a silent cast."""
    info = read_info(folder)
    try:
        tensors = load_file(folder / "state.safetensors")
    except (SafetensorError, OSError) as exc:  # FileNotFoundError included
        raise _damaged(folder / "state.safetensors", str(exc)) from exc
    weights = {k: v for k, v in tensors.items() if k.startswith("model.")}
    check_tensors(folder, weights, {f"model.{k}": v for k, v in model.state_dict().items()},
                  file="state.safetensors", config="state.json")
    model.load_state_dict({k[6:]: v for k, v in weights.items()})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, slot = key.split(".", 2)
            state.setdefault(int(idx), {})[slot] = value
    for idx, slots in info["opt_scalars"].items():
        state.setdefault(int(idx), {}).update(slots)
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    gen.set_state(tensors["rng"][rank].clone())  # a copy: set_state misreads a row's view of the rows


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"config": {"train": {"lr": 1e-3}}}`` as ``{"config.train.lr": 1e-3}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
