"""The served models: found in the checkpoint directory, loaded through ``model/``, warmed up."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from app.batching import Batcher
from app.inference import ModelOps, PhotoRequest, SampleRequest
from app.metrics import Metrics
from app.onnx_runtime import OnnxGraphs
from app.settings import Settings
from model.checkpoint import CONFIG_FILE, Checkpoint, CheckpointError, load_checkpoint

log = logging.getLogger("aeserve")

OPERATIONS = {
    "dae": ("denoise", "encode", "decode", "interpolate"),
    "vae": ("denoise", "encode", "decode", "sample", "score", "interpolate"),
    "photo": ("denoise",),
}


class StartupError(Exception):
    """The service cannot start; ``str`` is the one line printed before exiting."""


@dataclass
class ServedModel:
    checkpoint: Checkpoint
    device: str
    ops: ModelOps
    batcher: Batcher
    load_seconds: float = 0.0
    warm: bool = False

    @property
    def meta(self) -> dict[str, Any]:
        return self.checkpoint.meta

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @cached_property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @cached_property
    def operations(self) -> tuple[str, ...]:
        return OPERATIONS.get(self.kind, ())

    @cached_property
    def channels(self) -> int:
        return int(self.meta["input_shape"][0])

    @cached_property
    def size(self) -> tuple[int, int] | None:
        """(height, width) for fixed-size models; ``None`` when any size goes (photo)."""
        if self.kind == "photo":
            return None
        _, h, w = self.meta["input_shape"]
        return int(h), int(w)

    @cached_property
    def latent_dim(self) -> int | None:
        value = self.meta.get("latent_dim")
        return int(value) if value is not None else None


def discover(checkpoint_dir: Path) -> list[Path]:
    """Every subfolder holding a ``config.json``, sorted by name."""
    if not checkpoint_dir.is_dir():
        raise StartupError(
            f"checkpoint directory {checkpoint_dir}: does not exist (AESERVE_CHECKPOINT_DIR)"
        )
    folders = sorted(
        p for p in checkpoint_dir.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file()
    )
    if not folders:
        raise StartupError(
            f"checkpoint directory {checkpoint_dir}: holds no model folder with a {CONFIG_FILE}"
        )
    return folders


def preflight(settings: Settings) -> list[str]:
    """Load and verify every checkpoint on the CPU, raising ``CheckpointError``/``StartupError``."""
    try:
        settings.resolve_runtime(settings.resolve_device())
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    names = []
    for folder in discover(settings.checkpoint_dir):
        load_checkpoint(folder, "cpu")
        names.append(folder.name)
    return names


def build_ops(ckpt: Checkpoint, kind: str, device: str, settings: Settings) -> ModelOps:
    """The model's operations on the runtime the settings pick (ONNX Runtime or torch)."""
    graphs = None
    if kind in ("dae", "vae") and settings.resolve_runtime(device) == "onnxruntime":
        shape = tuple(int(d) for d in ckpt.meta["input_shape"])
        try:
            graphs = OnnxGraphs(ckpt.model, kind, shape, int(ckpt.meta["latent_dim"]),
                                settings.torch_threads)
        except Exception as exc:
            if settings.runtime == "onnxruntime":  # asked for by name: refuse to start without it
                raise StartupError(f"{ckpt.name}: ONNX Runtime: {exc}") from exc
            log.warning("%s: ONNX Runtime not used (%s: %s); serving with torch",
                        ckpt.name, type(exc).__name__, exc)
    return ModelOps(ckpt.model, kind, device, graphs)


def load_one(folder: Path, settings: Settings, metrics: Metrics) -> ServedModel:
    """Load (hash verified, no pickle) onto the device; call inside the event loop."""
    start = time.perf_counter()
    device = settings.resolve_device()
    ckpt = load_checkpoint(folder, device)
    ckpt.model.requires_grad_(False)
    kind = str(ckpt.meta.get("kind"))
    if kind not in OPERATIONS:
        raise CheckpointError(folder, CONFIG_FILE, f"unknown model kind {kind!r}")
    batcher = Batcher(
        ckpt.name,
        max_batch_size=settings.max_batch_size,
        max_delay_s=settings.max_batch_delay_ms / 1000.0,
        queue_size=settings.queue_size,
        inline_max_rows=settings.inline_max_rows,
        metrics=metrics.for_model(ckpt.name),
    )
    served = ServedModel(ckpt, device, build_ops(ckpt, kind, device, settings), batcher)
    served.load_seconds = time.perf_counter() - start
    return served


async def warm_up(served: ServedModel) -> None:
    """One pass of every operation on the model thread, so the first request pays no setup cost."""
    start = time.perf_counter()
    ops = served.ops
    c = served.channels
    if served.size is None:
        await served.batcher.call_on_thread(
            ops.photo_denoise, PhotoRequest(torch.zeros(1, c, 64, 64), None)
        )
    else:
        x = torch.zeros(1, c, *served.size)
        await served.batcher.call_on_thread(ops.denoise, x)
        await served.batcher.call_on_thread(ops.encode, x)
        if "sample" in served.operations:
            await served.batcher.call_on_thread(ops.sample, SampleRequest(2, 0, 1.0))
    served.load_seconds += time.perf_counter() - start
    served.warm = True
