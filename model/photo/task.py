"""Training and validation of the photo denoiser on a folder of photographs (train400).

Each batch is ``batch_size`` square patches (``image_size`` of the model config) cut at random from
the training images with a random flip/rotation (the 8 symmetries of the square). Noise is drawn per
patch: sigma uniform in ``[sigma_min, sigma_max]`` (0-1 scale), white Gaussian, not clipped (the
evaluation protocol). A fraction ``KNOWN_FRACTION`` of the patches is shown its true sigma, the rest
are blind, so one set of weights serves both uses. With ``sigma_weight_floor`` > 0 the patches' MSEs
are averaged with weights 1 / (sigma + floor): the MSE of a denoiser grows about linearly with sigma,
so plain MSE lets the high levels dominate and a blind model trades low-sigma quality for them.

Validation: held-out whole images with fixed-seed noise at sigma 15, 25 and 50 (0-255 scale), blind;
``val_loss`` is minus the mean PSNR (dB).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.config import RunConfig
from model.data.loaders import SPLIT_SEED, load_image_folder
from model.tasks import psnr_from_mse

KNOWN_FRACTION = 0.25
VAL_SIGMAS = (15.0, 25.0, 50.0)
VAL_SEED = 1234


def psnr(clean: torch.Tensor, estimate: torch.Tensor) -> float:
    """PSNR in dB of ``estimate`` against ``clean``, both on the 0-1 scale (peak 1)."""
    return psnr_from_mse(float(torch.mean((clean - estimate) ** 2)))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square (k in 0..7) on the last two dimensions."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


class PhotoTask:
    """The ``model.tasks.Task`` of ``kind == "photo"``."""

    def __init__(self, cfg: RunConfig, data_dir: str, device: torch.device, limit: int = 0) -> None:
        self.cfg = cfg
        self.device = device
        self.patch = int(cfg.model.image_size[0])
        images = load_image_folder(Path(data_dir), cfg.model.channels)
        images = [self._at_least_patch(img) for img in images]
        perm = np.random.default_rng(SPLIT_SEED).permutation(len(images))
        n_val = max(1, round(len(images) * cfg.train.val_fraction)) if len(images) > 1 else 0
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        if n_val == 0:
            val_idx = train_idx
        if limit:
            train_idx = train_idx[:limit]
            val_idx = val_idx[: max(1, limit // 10)]
        self.train = [torch.from_numpy(images[i].copy()) for i in train_idx]
        self.val = [torch.from_numpy(images[i].copy()) for i in val_idx]
        # the training images as one (N, C, H, W) uint8 tensor on the device, if they share a size
        same_size = len({tuple(img.shape) for img in self.train}) == 1
        self.stacked = torch.stack(self.train).to(device) if same_size else None
        self.data_description: dict[str, Any] = {
            "name": "folder",
            "path": str(data_dir),
            "train": len(self.train),
            "val": len(self.val),
            "test": None,
            "split": f"validation = first {n_val} of a permutation of the images "
            f"(numpy seed {SPLIT_SEED})",
            "patches": f"{self.patch}x{self.patch}, random crop + flip/rotation, "
            f"{cfg.train.patches_per_epoch} per epoch",
        }

    def _at_least_patch(self, img: np.ndarray) -> np.ndarray:
        _, h, w = img.shape
        ph, pw = max(0, self.patch - h), max(0, self.patch - w)
        if ph or pw:
            img = np.pad(img, ((0, 0), (0, ph), (0, pw)), mode="edge")
        return img

    def num_train(self) -> int:
        return int(self.cfg.train.patches_per_epoch)

    def batches(self, epoch: int, rank: int, world: int) -> Iterator[torch.Tensor]:
        """uint8 patches (B, C, P, P); every rank draws its own share of the epoch.

        When every training image has the same size (train400), the patches are cut from one stacked
        tensor on the training device in a single indexing op per batch; otherwise one by one. Both
        paths cut the same patches from the same draws.
        """
        bs, p = self.cfg.train.batch_size, self.patch
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 100003 + epoch * 101 + rank)
        n_batches = self.num_train() // (bs * world)
        for _ in range(n_batches):
            picks = torch.randint(len(self.train), (bs,), generator=gen)
            sym = torch.randint(8, (bs,), generator=gen)
            u = torch.rand(bs, 2, generator=gen)
            if self.stacked is not None:
                yield self._cut_stacked(self.stacked, picks, sym, u)
                continue
            patches = []
            for j, idx in enumerate(picks.tolist()):
                img = self.train[idx]
                top = int(u[j, 0] * (img.shape[1] - p + 1))
                left = int(u[j, 1] * (img.shape[2] - p + 1))
                patches.append(dihedral(img[:, top : top + p, left : left + p], int(sym[j])))
            yield torch.stack(patches)

    def _cut_stacked(self, stack: torch.Tensor, picks: torch.Tensor, sym: torch.Tensor,
                     u: torch.Tensor) -> torch.Tensor:
        p = self.patch
        h, w = stack.shape[-2:]
        # the same float32 arithmetic as the one-by-one path; int() and .long() both truncate
        top = (u[:, 0] * (h - p + 1)).long()
        left = (u[:, 1] * (w - p + 1)).long()
        ar = torch.arange(p)
        rows = (top[:, None] + ar).to(stack.device)[:, :, None]
        cols = (left[:, None] + ar).to(stack.device)[:, None, :]
        # advanced indices around a slice: the result is (B, P, P, C)
        patches = stack[picks.to(stack.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        # all 8 symmetries, then each patch's own: no host-device sync, unlike boolean masks
        variants = torch.stack([dihedral(patches, k) for k in range(8)])
        return variants[sym.to(stack.device), torch.arange(len(picks), device=stack.device)]

    def loss(
        self, model: nn.Module, batch: torch.Tensor, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        noise_cfg = self.cfg.noise
        clean = batch.to(self.device, non_blocking=True).float().div_(255.0)
        n = clean.shape[0]
        u = torch.rand(n, generator=gen, device=clean.device)
        sigma = noise_cfg.sigma_min + (noise_cfg.sigma_max - noise_cfg.sigma_min) * u
        noisy = clean + sigma.view(n, 1, 1, 1) * torch.randn(
            clean.shape, generator=gen, device=clean.device
        )
        if noise_cfg.clip:
            noisy = noisy.clamp(0.0, 1.0)
        known = torch.rand(n, generator=gen, device=clean.device) < KNOWN_FRACTION
        level = torch.where(known, sigma, torch.full_like(sigma, float("nan")))
        floor = self.cfg.train.sigma_weight_floor
        if floor <= 0.0:
            return F.mse_loss(model(noisy, level), clean), {}
        per_patch = (model(noisy, level).float() - clean).pow(2).mean(dim=(1, 2, 3))
        weight = 1.0 / (sigma + floor)
        return (weight * per_patch).sum() / weight.sum(), {}

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        gen = torch.Generator().manual_seed(VAL_SEED)
        metrics: dict[str, float] = {}
        for s in VAL_SIGMAS:
            values = []
            for img in self.val:
                clean = img.float().div(255.0)[None]
                noisy = clean + (s / 255.0) * torch.randn(clean.shape, generator=gen)
                out = model(noisy.to(self.device)).cpu().clamp(0.0, 1.0)
                values.append(psnr(clean, out))
            metrics[f"psnr_{int(s)}"] = sum(values) / len(values)
        metrics["psnr"] = sum(metrics[f"psnr_{int(s)}"] for s in VAL_SIGMAS) / len(VAL_SIGMAS)
        metrics["val_loss"] = -metrics["psnr"]
        return metrics
