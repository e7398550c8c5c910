"""What runs on a model's thread: tensor in, tensor out. No HTTP, no images, no event loop.

Images travel as uint8 tensors: the scaling to [0, 1] floats and the quantisation back to uint8 run
here, once per batch on the model thread, instead of per image on the event loop. Every function
takes CPU tensors, moves them to the model's device, and returns CPU tensors; the batcher wraps
each call in ``torch.inference_mode()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from model.losses import iwae_nll

if TYPE_CHECKING:  # the ONNX graphs are built from to_unit/to_uint8 below
    from app.onnx_runtime import OnnxGraphs


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> floats in [0, 1]; also traced into the ONNX graphs, so both runtimes agree."""
    return x.float() * (1.0 / 255.0)


def to_uint8(y: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8, rounded; also traced into the ONNX graphs."""
    return (y * 255.0 + 0.5).clamp(0.0, 255.0).to(torch.uint8)


@dataclass(frozen=True)
class SampleRequest:
    n: int
    seed: int
    temperature: float


@dataclass(frozen=True)
class ScoreRequest:
    x: torch.Tensor
    k: int
    seed: int


@dataclass(frozen=True)
class PhotoRequest:
    x: torch.Tensor  # (1, C, H, W) uint8
    sigma: float | None


class ModelOps:
    """The operations of one loaded model, bound to its device.

    With ``graphs`` (ONNX Runtime sessions, CPU only) denoise, encode, latent and decode of uint8
    images run there instead of through torch, scaling included (one GIL-free call per batch);
    score and the photo denoiser always run on torch.
    """

    def __init__(self, model: nn.Module, kind: str, device: str,
                 graphs: OnnxGraphs | None = None) -> None:
        self.model: Any = model  # DenoisingAutoencoder, VAE or PhotoDenoiser (duck-typed)
        self.kind = kind
        self.device = torch.device(device)
        self.graphs = graphs

    @property
    def runtime(self) -> str:
        return "onnxruntime" if self.graphs is not None else "torch"

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> floats in [0, 1] on the device (float input is taken as already scaled)."""
        x = x.to(self.device, non_blocking=True)
        return to_unit(x) if x.dtype == torch.uint8 else x.float()

    @staticmethod
    def _out(y: torch.Tensor) -> torch.Tensor:
        """[0, 1] floats -> uint8 on the CPU, rounded."""
        return to_uint8(y.float()).cpu()

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        if self.graphs is not None and x.dtype == torch.uint8:
            return self.graphs.run("denoise", x)[0]
        return self._out(self.model.denoise(self._in(x)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """DAE: ``(z,)``; VAE: ``(mu, logvar)``."""
        if self.graphs is not None and x.dtype == torch.uint8:
            return self.graphs.run("encode", x)
        out = self.model.encode(self._in(x))
        if self.kind == "vae":
            return out.mean.float().cpu(), out.logvar.float().cpu()
        return (out.float().cpu(),)

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic code of an image: z (DAE) or the posterior mean (VAE)."""
        if self.graphs is not None and x.dtype == torch.uint8:
            return self.encode(x)[0]
        out = self.model.encode(self._in(x))
        return (out.mean if self.kind == "vae" else out).float().cpu()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.graphs is not None:
            return self.graphs.run("decode", z.float())[0]
        return self._out(self.model.decode(z.to(self.device, non_blocking=True).float()))

    def sample(self, req: SampleRequest) -> torch.Tensor:
        """Same seed, same z: z is drawn on the CPU from a seeded generator, then decoded."""
        gen = torch.Generator().manual_seed(req.seed)
        z = torch.randn(req.n, self.model.cfg.latent_dim, generator=gen) * req.temperature
        return self.decode(z)

    def score(self, req: ScoreRequest) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator(device=self.device).manual_seed(req.seed)
        nll, neg_elbo = iwae_nll(self.model, self._in(req.x), req.k, chunk=100, generator=gen)
        return nll.float().cpu(), neg_elbo.float().cpu()

    def photo_denoise(self, req: PhotoRequest) -> tuple[torch.Tensor, float]:
        from model.photo import denoise_image  # written alongside; only photo checkpoints need it

        y, sigma = denoise_image(self.model, self._in(req.x), sigma=req.sigma)
        return self._out(y), float(sigma)
