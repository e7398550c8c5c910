"""Where a model's tensor operations run: torch, or ONNX Runtime on a CPU.

A kind's adapter names its graph operations (``denoise``, ``encode``, ``decode``: uint8 images
or float latents in, uint8 images or float latents out, the scaling inside); the runtime runs them.
``AESERVE_RUNTIME`` picks one when the model loads and the card reports it. ONNX Runtime graphs are
exported in memory from the weights ``model/`` loaded and verified (no file written, nothing
fetched) and each is checked against torch before it serves: one ``InferenceSession.run`` is the
whole operation with the GIL released, where torch takes the GIL back between layers
(docs/serving.md, "Runtime").
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

log = logging.getLogger("aeserve")

Outputs = tuple[torch.Tensor, ...]
GraphFn = Callable[[torch.Tensor], Any]  # a tensor or a tuple of tensors
TOLERANCE = 1e-4  # max |onnx - torch| on latents; uint8 images may differ by one level (rounding)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1]; traced into the ONNX graphs too, so both runtimes agree."""
    return x.float() * (1.0 / 255.0)


def to_uint8(y: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8, rounded; traced into the ONNX graphs too."""
    return (y.float() * 255.0 + 0.5).clamp(0.0, 255.0).to(torch.uint8)


def _as_tuple(out: Any) -> Outputs:
    return out if isinstance(out, tuple) else (out,)


class Runtime(Protocol):
    name: str

    def run(self, op: str, x: torch.Tensor) -> Outputs:
        """The operation on a CPU tensor; its outputs as CPU tensors."""
        ...


class TorchRuntime:
    name = "torch"

    def __init__(self, graphs: Mapping[str, GraphFn], device: torch.device) -> None:
        self.graphs = dict(graphs)
        self.device = device

    def run(self, op: str, x: torch.Tensor) -> Outputs:
        out = _as_tuple(self.graphs[op](x.to(self.device, non_blocking=True)))
        return tuple(t.cpu() for t in out)


def onnx_available() -> bool:
    """Whether onnxruntime and onnx (the exporter needs it) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Forward(nn.Module):
    """One operation as a module the exporter can trace; the model's weights are its parameters."""

    def __init__(self, model: nn.Module, fn: GraphFn) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, x: torch.Tensor) -> Any:
        return self.fn(x)


class OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, model: nn.Module, graphs: Mapping[str, GraphFn],
                 examples: Mapping[str, torch.Tensor], threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions: dict[str, Any] = {}
        for op, fn in graphs.items():
            example = examples[op]
            buf = io.BytesIO()
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                # the TorchScript exporter announces its own deprecation on every call
                warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
                warnings.filterwarnings("ignore", message="The feature will be removed",
                                        category=DeprecationWarning)
                torch.onnx.export(_Forward(model, fn), (example,), buf,  # type: ignore[arg-type]
                                  input_names=["x"], dynamic_axes={"x": {0: "batch"}}, dynamo=False)
                want = _as_tuple(fn(example))
            self.sessions[op] = ort.InferenceSession(
                buf.getvalue(), options, providers=["CPUExecutionProvider"]
            )
            got = self.run(op, example)
            worst = max(float((g.double() - w.double()).abs().max())
                        for g, w in zip(got, want, strict=True))
            if worst > (1.0 if want[0].dtype == torch.uint8 else TOLERANCE):
                raise ValueError(f"ONNX Runtime's {op} differs from torch's by {worst:.2e}")

    def run(self, op: str, x: torch.Tensor) -> Outputs:
        outs = self.sessions[op].run(None, {"x": np.ascontiguousarray(x.numpy())})
        return tuple(torch.from_numpy(o) for o in outs)


def build_runtime(
    choice: str,
    model: nn.Module,
    graphs: Mapping[str, GraphFn],
    examples: Mapping[str, torch.Tensor],
    device: torch.device,
    threads: int,
) -> Runtime:
    """``choice`` is the resolved setting: ``onnxruntime`` (CPU) or ``torch``.

    A kind without graphs (the photo denoiser) always runs on torch. When ONNX Runtime was picked
    by ``auto`` and the export fails, the model serves on torch with a warning; when it was asked
    for by name, the error propagates and the service does not start.
    """
    if choice == "onnxruntime" and graphs:
        return OnnxRuntime(model, graphs, examples, threads)
    return TorchRuntime(graphs, device)
