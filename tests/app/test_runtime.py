"""The ONNX Runtime path on a CPU: same answers as torch, chosen by AESERVE_RUNTIME, reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.inference import ModelOps
from app.onnx_runtime import OnnxGraphs, available
from app.registry import StartupError, preflight
from app.settings import Settings
from model.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not available(), reason="onnxruntime/onnx not installed")


@pytest.mark.parametrize("name", ["mnist-dae", "mnist-vae"])
def test_onnx_operations_match_torch(tiny_checkpoints: Path, name: str) -> None:
    ckpt = load_checkpoint(tiny_checkpoints / name)
    kind = str(ckpt.meta["kind"])
    latent = int(ckpt.meta["latent_dim"])
    graphs = OnnxGraphs(ckpt.model, kind, (1, 28, 28), latent, threads=1)
    fast, ref = ModelOps(ckpt.model, kind, "cpu", graphs), ModelOps(ckpt.model, kind, "cpu")
    assert (fast.runtime, ref.runtime) == ("onnxruntime", "torch")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=gen)
    z = torch.randn(7, latent, generator=gen)
    with torch.inference_mode():
        assert (fast.denoise(x).int() - ref.denoise(x).int()).abs().max() <= 1  # 8-bit rounding
        assert (fast.decode(z).int() - ref.decode(z).int()).abs().max() <= 1
        for a, b in zip(fast.encode(x), ref.encode(x), strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4)
        assert torch.allclose(fast.latent(x), ref.latent(x), atol=1e-4)
        assert fast.denoise(x[:1]).shape == (1, 1, 28, 28)  # any batch size


def test_the_card_names_the_runtime_and_torch_can_be_chosen(
    app_with: Callable[..., TestClient],
) -> None:
    auto = app_with().get("/v1/models/mnist-dae").json()
    assert (auto["device"], auto["runtime"]) == ("cpu", "onnxruntime")
    torch_only = app_with(runtime="torch").get("/v1/models/mnist-dae").json()
    assert torch_only["runtime"] == "torch"
    forced = app_with(runtime="onnxruntime").get("/v1/models/mnist-vae").json()
    assert forced["runtime"] == "onnxruntime"


def test_onnxruntime_on_a_gpu_is_refused_at_startup(tiny_checkpoints: Path) -> None:
    settings = Settings(checkpoint_dir=tiny_checkpoints, device="cuda", runtime="onnxruntime")
    with pytest.raises(StartupError, match="CPU only"):
        preflight(settings)
    assert Settings(device="cuda").resolve_runtime("cuda") == "torch"  # auto: torch on a GPU
