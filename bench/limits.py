"""The model's in-process limit: operations timed directly on the loaded checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.inference import SampleRequest
from app.registry import build_ops
from app.settings import Settings
from model.checkpoint import load_checkpoint


def _rate(fn: Callable[[], Any], items: int, seconds: float = 2.0) -> float:
    """Items per second of ``fn`` (which handles ``items`` items per call), after a warm-up."""
    with torch.inference_mode():
        for _ in range(3):
            fn()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn()
            calls += 1
        return calls * items / (time.perf_counter() - start)


def in_process_limits(checkpoints: Path) -> dict[str, Any]:
    """Requests per second each benchmarked operation could reach with no HTTP at all."""
    settings = Settings()
    torch.set_num_threads(settings.torch_threads)
    batch = settings.max_batch_size
    device = settings.resolve_device()  # the service's own device choice (AESERVE_DEVICE)
    dae = load_checkpoint(checkpoints / "mnist-dae", device)
    vae = load_checkpoint(checkpoints / "mnist-vae", device)
    dae.model.requires_grad_(False)
    vae.model.requires_grad_(False)
    # the service's own runtime choice too (AESERVE_RUNTIME): ONNX Runtime on a CPU by default
    dae_ops = build_ops(dae, "dae", device, settings)
    vae_ops = build_ops(vae, "vae", device, settings)
    # uint8 images, as the service hands them over: ModelOps takes float input as already scaled
    # and runs it through torch, so float input here would time torch under an ONNX label
    x = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
    return {
        "device": device,
        "runtime": dae_ops.runtime,
        "torch_threads": settings.torch_threads,
        "batch": batch,
        "denoise": _rate(lambda: dae_ops.denoise(x), batch),
        "denoise_batch1": _rate(lambda: dae_ops.denoise(x[:1]), 1),
        "encode": _rate(lambda: vae_ops.encode(x), batch),
        "sample": _rate(lambda: vae_ops.sample(SampleRequest(16, 0, 1.0)), 1),
    }
