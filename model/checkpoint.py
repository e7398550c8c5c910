"""The checkpoint: the contract between training (``model/``) and serving (``app/``).

A checkpoint is a folder with two files:

- ``model.safetensors``: the weights only (no pickle, no code);
- ``config.json``: ``format_version``, the run config that rebuilds the network, the image shape and
  value range, the dataset and split, steps, seed, torch version, the exact training command, the
  sha256 of the weights, and the evaluation metrics with the command that measured them.

``load_checkpoint`` rebuilds the model from ``config.json``, checks that the fields at its top
(``kind``, ``input_shape``, ...) are what the config builds, verifies the hash and each tensor's
dtype and shape (never cast), and raises ``CheckpointError`` naming the folder, the file and the problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from model.config import RunConfig
from model.networks import build_model

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the folder, the file and the problem."""

    def __init__(self, folder: Path | str, file: str, problem: str) -> None:
        self.folder = Path(folder)
        self.file = file
        self.problem = problem
        super().__init__(f"checkpoint {self.folder}: {file}: {problem}")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (eval mode) and its metadata."""

    path: Path
    config: RunConfig
    meta: dict[str, Any]
    model: nn.Module

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sha256(self) -> str:
        return str(self.meta["weights_sha256"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM while a checkpoint is written, then deliver them."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            raise KeyboardInterrupt


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_config(folder: Path, meta: dict[str, Any]) -> None:
    atomic_write_bytes(folder / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())


def summary(config: RunConfig) -> dict[str, Any]:
    """The fields at the top of ``config.json`` that a client reads (the service's model card, its
    input checks): what ``config`` builds, said again where it is easy to read."""
    model = config.model
    return {
        "kind": model.kind,
        "input_shape": list(model.input_shape),
        "value_range": model.value_range,
        "latent_dim": model.latent_dim if model.has_latent else None,
        "likelihood": model.likelihood,
    }


def check_summary(folder: Path, meta: dict[str, Any], config: RunConfig) -> None:
    """``CheckpointError`` naming the first top-level field of ``meta`` that is not what its
    ``config`` builds: one of the two was edited by hand, and a service would check its inputs
    against one and run the network of the other."""
    for key, built in summary(config).items():
        if key not in meta:
            raise CheckpointError(folder, CONFIG_FILE, f"missing field {key!r} ({built!r} for this "
                                  "'config')")
        if meta[key] != built:
            raise CheckpointError(folder, CONFIG_FILE, f"field {key!r} is {meta[key]!r}, but the "
                                  f"network its 'config' builds has {built!r} (edited by hand? the "
                                  "two must agree)")


def save_checkpoint(
    folder: Path | str, model: nn.Module, config: RunConfig, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write weights then config, each atomically, with Ctrl-C held back: never a torn folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        **summary(config),
        "config": config.to_dict(),
        "torch_version": torch.__version__,
        **(extra or {}),
    }
    with deferred_interrupt():
        atomic_save_tensors(folder / WEIGHTS_FILE, model.state_dict())
        meta["weights_sha256"] = sha256_file(folder / WEIGHTS_FILE)
        write_config(folder, meta)
    return meta


def read_meta(folder: Path | str) -> dict[str, Any]:
    """Parse and check ``config.json`` without touching the weights."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(folder, CONFIG_FILE, "file is missing")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(folder, CONFIG_FILE, f"not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(folder, CONFIG_FILE, "must hold a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            folder,
            CONFIG_FILE,
            f"unsupported format_version {version!r} (this loader reads {FORMAT_VERSION})",
        )
    for key in ("config", "weights_sha256"):
        if key not in meta:
            raise CheckpointError(folder, CONFIG_FILE, f"missing field {key!r}")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(folder, CONFIG_FILE, "field 'config' must hold a JSON object")
    return meta


def describe(tensor: torch.Tensor) -> str:
    """A tensor's type and shape as a message names them: ``float32 (32, 1, 3, 3)``."""
    return f"{str(tensor.dtype).removeprefix('torch.')} {tuple(tensor.shape)}"


def check_tensors(folder: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                  file: str = WEIGHTS_FILE, config: str = CONFIG_FILE) -> None:
    """``CheckpointError`` about ``file`` unless ``state`` has exactly the tensors of ``expected``
    (the network that ``config`` builds), each of its dtype and shape: ``load_state_dict`` would cast
    another dtype silently (float16 or int64 weights loaded as float32) and answer another shape
    with a traceback."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            folder,
            file,
            f"tensors do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}",
        )
    for key, tensor in expected.items():
        found = state[key]
        if found.dtype != tensor.dtype or tuple(found.shape) != tuple(tensor.shape):
            raise CheckpointError(
                folder,
                file,
                f"tensor {key}: expected {describe(tensor)} (what {config} builds), "
                f"found {describe(found)}",
            )


def load_checkpoint(
    folder: Path | str, device: str | torch.device = "cpu", meta: dict[str, Any] | None = None
) -> Checkpoint:
    """Rebuild, verify and load a checkpoint; the model comes back in eval mode on ``device``.

    ``meta``: the folder's config.json as the caller already read it (``read_meta``), so that what
    it decided from that text and the network built here agree even if the file changed since
    (weights that changed with it fail the hash check)."""
    folder = Path(folder)
    if meta is None:
        meta = read_meta(folder)
    try:
        # a recipe field from a newer model.train does not stop a checkpoint from loading
        config = RunConfig.from_dict(meta["config"], strict_recipe=False)
        model = build_model(config.model)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(folder, CONFIG_FILE, f"invalid model config ({exc})") from exc
    check_summary(folder, meta, config)

    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(folder, WEIGHTS_FILE, "file is missing")
    digest = sha256_file(weights)
    if digest != meta["weights_sha256"]:
        raise CheckpointError(
            folder,
            WEIGHTS_FILE,
            f"sha256 mismatch: file has {digest[:12]}…, config.json expects "
            f"{str(meta['weights_sha256'])[:12]}… (corrupt or replaced file)",
        )
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(folder, WEIGHTS_FILE, f"unreadable safetensors ({exc})") from exc

    check_tensors(folder, state, model.state_dict())
    model.load_state_dict(state)
    model.to(device).eval()
    return Checkpoint(path=folder, config=config, meta=meta, model=model)
