"""The model's in-process limit: operations timed directly on the loaded checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from app.kinds import ServedModel
from app.metrics import Metrics
from app.registry import load_model
from app.settings import Settings


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
    metrics = Metrics()
    # the service's own loading: its device (AESERVE_DEVICE) and runtime (AESERVE_RUNTIME)
    dae: ServedModel = load_model(checkpoints / "mnist-dae", settings, metrics)
    vae: ServedModel = load_model(checkpoints / "mnist-vae", settings, metrics)
    x = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)  # as the service hands over
    z = torch.randn(16, vae.latent_dim or 1)
    return {
        "device": str(dae.device),
        "runtime": dae.runtime.name,
        "torch_threads": settings.torch_threads,
        "batch": batch,
        "denoise": _rate(lambda: dae.runtime.run("denoise", x), batch),
        "denoise_batch1": _rate(lambda: dae.runtime.run("denoise", x[:1]), 1),
        "encode": _rate(lambda: vae.runtime.run("encode", x), batch),
        "sample": _rate(lambda: vae.runtime.run("decode", z), 1),
    }
