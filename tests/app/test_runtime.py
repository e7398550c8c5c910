"""Where the graphs run: ONNX Runtime on a CPU gives torch's answers, chosen by AESERVE_RUNTIME."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.kinds import KINDS, ServedModel
from app.metrics import Metrics
from app.registry import StartupError, preflight
from app.runtime import OnnxRuntime, TorchRuntime, build_runtime, onnx_available, to_uint8, to_unit
from app.settings import Settings
from model.checkpoint import load_checkpoint

needs_onnx = pytest.mark.skipif(not onnx_available(), reason="onnxruntime/onnx not installed")


def served_on_torch(checkpoints: Path, name: str) -> ServedModel:
    ckpt = load_checkpoint(checkpoints / name)
    settings = Settings(checkpoint_dir=checkpoints, runtime="torch", torch_threads=1)
    return KINDS[str(ckpt.meta["kind"])](ckpt, "cpu", settings, Metrics().for_model(name))


def test_scaling_round_trips_every_byte() -> None:
    x = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(to_unit(x)), x)
    assert to_uint8(torch.tensor([-1.0, 2.0])).tolist() == [0, 255]  # clamped


@needs_onnx
@pytest.mark.parametrize("name", ["mnist-dae", "mnist-vae"])
def test_onnx_operations_match_torch(tiny_checkpoints: Path, name: str) -> None:
    served = served_on_torch(tiny_checkpoints, name)
    ref = served.runtime
    fast = OnnxRuntime(served.model, served.graphs(), served.examples(), threads=1)
    assert (fast.name, ref.name) == ("onnxruntime", "torch")
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=gen)
    z = torch.randn(7, served.latent_dim or 1, generator=gen)
    with torch.inference_mode():
        for op, arg in (("denoise", x), ("decode", z)):
            (a,), (b,) = fast.run(op, arg), ref.run(op, arg)
            assert a.dtype == b.dtype == torch.uint8
            assert (a.int() - b.int()).abs().max() <= 1  # 8-bit rounding
        for a, b in zip(fast.run("encode", x), ref.run("encode", x), strict=True):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4)
        assert fast.run("denoise", x[:1])[0].shape == (1, 1, 28, 28)  # any batch size


@pytest.mark.parametrize("name", ["mnist-dae", "mnist-vae"])
def test_the_warm_up_examples_are_what_requests_send(tiny_checkpoints: Path, name: str) -> None:
    """Images reach the graphs as uint8, latents as float32: warm-up runs the serving path."""
    served = served_on_torch(tiny_checkpoints, name)
    examples = served.examples()
    assert set(examples) == set(served.graphs()) == {"denoise", "encode", "decode"}
    assert examples["denoise"].dtype == examples["encode"].dtype == torch.uint8
    assert examples["decode"].dtype == torch.float32


def test_torch_is_built_when_asked_or_without_graphs(tiny_checkpoints: Path) -> None:
    served = served_on_torch(tiny_checkpoints, "mnist-dae")
    built = build_runtime("torch", served.model, served.graphs(), served.examples(),
                          torch.device("cpu"), 1)
    assert isinstance(built, TorchRuntime)
    no_graphs = build_runtime("onnxruntime", served.model, {}, {}, torch.device("cpu"), 1)
    assert isinstance(no_graphs, TorchRuntime)  # the photo denoiser: always torch


@needs_onnx
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
    # without a GPU the device itself is refused first, naming AESERVE_DEVICE
    refusal = "CPU only" if torch.cuda.is_available() else "AESERVE_DEVICE=cuda: torch sees 0 CUDA"
    with pytest.raises(StartupError, match=refusal):
        preflight(settings)
    assert Settings(device="cuda").resolve_runtime("cuda") == "torch"  # auto: torch on a GPU
