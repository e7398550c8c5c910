"""Training and validation of the photo denoiser on folders of photographs.

Each batch is ``batch_size`` square patches (``image_size`` of the model config) cut at random from
the training images of every folder given, with a random flip/rotation (the 8 symmetries of the
square). Images of one shape are stacked on the training device, so a batch is cut with one
indexing op per shape. Noise is drawn per patch: sigma uniform in ``[sigma_min, sigma_max]`` (0-1
scale), white Gaussian; the first ``eight_bit_fraction`` of every batch is clipped to [0, 1] and
rounded to 8 bits (the noise users' photos carry), the rest unclipped (the papers' protocol). For a
colour network, ``gray_fraction`` of every batch, spread evenly over it (every fourth patch for
0.25), is made gray (three equal planes with the same noise in each): gray patches get 8-bit and
unclipped noise alike, as gray photos reach the service both ways. A fraction ``known_fraction``
of the patches is shown its true sigma, the rest are blind, so one set of weights serves both uses.
With ``sigma_weight_floor`` > 0 the patches' MSEs are averaged with weights 1 / (sigma + floor): the
MSE of a denoiser grows about linearly with sigma, so plain MSE lets the high levels dominate and a
blind model trades low sigma for them.

Validation: held-out whole images with fixed-seed noise at sigma 15, 25 and 50 (0-255 scale), blind,
unclipped and 8-bit; ``val_loss`` is minus the mean PSNR (dB) over both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.config import RunConfig
from model.data.loaders import SPLIT_SEED, load_image_folder
from model.metrics import psnr
from model.noise import draw_levels, eight_bit_items, gaussian_noise, spread_items

VAL_SIGMAS = (15.0, 25.0, 50.0)
VAL_SEED = 1234


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square (k in 0..7) on the last two dimensions."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


class PhotoTask:
    """The ``model.tasks.Task`` of ``kind == "photo"``; ``data_dirs``: one folder or several."""

    def __init__(self, cfg: RunConfig, data_dirs: str | Path | list[str] | list[Path],
                 device: torch.device, limit: int = 0) -> None:
        self.cfg = cfg
        self.device = device
        self.patch = int(cfg.model.image_size[0])
        folders = [Path(d) for d in (data_dirs if isinstance(data_dirs, list) else [data_dirs])]
        images = [self._landscape(self._at_least_patch(img))
                  for folder in folders for img in load_image_folder(folder, cfg.model.channels)]
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
        # the training images stacked on the device, one (N, C, H, W) uint8 tensor per shape
        self.stacked = True
        shapes = sorted({tuple(img.shape) for img in self.train})
        self.groups = [torch.tensor([i for i, img in enumerate(self.train) if tuple(img.shape) == s])
                       for s in shapes]
        self.stacks = [torch.stack([self.train[i] for i in g.tolist()]).to(device) for g in self.groups]
        self.data_description: dict[str, Any] = {
            "name": "folder",
            "path": str(folders[0]) if len(folders) == 1 else [str(f) for f in folders],
            "train": len(self.train),
            "val": len(self.val),
            "test": None,
            "split": (f"validation = first {n_val} of a permutation of the images "
                      f"(numpy seed {SPLIT_SEED})" if n_val else
                      "validation = the training image itself (a single image: none held out)"),
            "patches": f"{self.patch}x{self.patch}, random crop + flip/rotation, "
            f"{cfg.train.patches_per_epoch} per epoch",
        }

    @classmethod
    def from_dirs(cls, cfg: RunConfig, data_dirs: list[Path], device: torch.device,
                  limit: int = 0) -> PhotoTask:
        """``model.tasks.make_task``'s constructor: every folder given is read."""
        return cls(cfg, data_dirs, device, limit)

    def _at_least_patch(self, img: np.ndarray) -> np.ndarray:
        _, h, w = img.shape
        ph, pw = max(0, self.patch - h), max(0, self.patch - w)
        if ph or pw:
            img = np.pad(img, ((0, 0), (0, ph), (0, pw)), mode="edge")
        return img

    @staticmethod
    def _landscape(img: np.ndarray) -> np.ndarray:
        """Portrait images turned a quarter (a symmetry the patches get anyway): fewer shapes."""
        return np.ascontiguousarray(np.rot90(img, 1, axes=(1, 2))) if img.shape[1] > img.shape[2] else img

    def num_train(self) -> int:
        return int(self.cfg.train.patches_per_epoch)

    def batches(self, epoch: int, rank: int, world: int) -> Iterator[torch.Tensor]:
        """uint8 patches (B, C, P, P); every rank draws its own share of the epoch.

        Stacked (the default): one indexing op per image shape; ``stacked = False``: one patch at a
        time. Both paths cut the same patches from the same draws.
        """
        bs = self.cfg.train.batch_size
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 100003 + epoch * 101 + rank)
        n_batches = self.num_train() // (bs * world)
        for _ in range(n_batches):
            picks = torch.randint(len(self.train), (bs,), generator=gen)
            sym = torch.randint(8, (bs,), generator=gen)
            u = torch.rand(bs, 2, generator=gen)
            yield self._cut_stacked(picks, sym, u) if self.stacked else self._cut_each(picks, sym, u)

    def _cut_each(self, picks: torch.Tensor, sym: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        p = self.patch
        patches = []
        for j, idx in enumerate(picks.tolist()):
            img = self.train[idx]
            top = int(u[j, 0] * (img.shape[1] - p + 1))
            left = int(u[j, 1] * (img.shape[2] - p + 1))
            patches.append(dihedral(img[:, top : top + p, left : left + p], int(sym[j])))
        return torch.stack(patches).to(self.device)

    def _cut_stacked(self, picks: torch.Tensor, sym: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        p, dev = self.patch, self.device
        out: torch.Tensor | None = None
        for group, stack in zip(self.groups, self.stacks, strict=True):
            where = torch.isin(picks, group)
            if not bool(where.any()):
                continue
            local = torch.searchsorted(group, picks[where])  # index within the stack
            h, w = stack.shape[-2:]
            # the same float32 arithmetic as the one-by-one path; int() and .long() both truncate
            top = (u[where, 0] * (h - p + 1)).long()
            left = (u[where, 1] * (w - p + 1)).long()
            ar = torch.arange(p)
            rows = (top[:, None] + ar).to(dev)[:, :, None]
            cols = (left[:, None] + ar).to(dev)[:, None, :]
            # advanced indices around a slice: the result is (B, P, P, C)
            patches = stack[local.to(dev)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
            # all 8 symmetries, then each patch's own: no host-device sync, unlike boolean masks
            variants = torch.stack([dihedral(patches, k) for k in range(8)])
            cut = variants[sym[where].to(dev), torch.arange(len(local), device=dev)]
            if out is None:
                out = torch.empty((len(picks), *cut.shape[1:]), dtype=cut.dtype, device=dev)
            out[where.nonzero()[:, 0].to(dev)] = cut
        assert out is not None
        return out

    def noisy_batch(self, batch: torch.Tensor, gen: torch.Generator,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy, clean, sigma) for a uint8 batch, on the device: the recipe of the module doc."""
        noise_cfg, train_cfg = self.cfg.noise, self.cfg.train
        clean = batch.to(self.device, non_blocking=True).float().div_(255.0)
        n = clean.shape[0]
        level = draw_levels(noise_cfg, n, gen, clean.device)
        normal = torch.randn(clean.shape, generator=gen, device=clean.device)
        if clean.shape[1] == 3 and train_cfg.gray_fraction > 0.0:
            gray = spread_items(n, train_cfg.gray_fraction, clean.device).view(n, 1, 1, 1)
            clean = torch.where(gray, clean.mean(dim=1, keepdim=True).expand_as(clean), clean)
            normal = torch.where(gray, normal[:, :1].expand_as(normal), normal)
        noisy = gaussian_noise(clean, level, normal, clip=noise_cfg.clip,
                               eight_bit=eight_bit_items(noise_cfg, n, clean.device))
        return noisy, clean, level.view(n)

    def loss(
        self, model: nn.Module, batch: torch.Tensor, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy, clean, sigma = self.noisy_batch(batch, gen)
        known = torch.rand(len(sigma), generator=gen, device=clean.device) < self.cfg.train.known_fraction
        level = torch.where(known, sigma, torch.full_like(sigma, float("nan")))
        floor = self.cfg.train.sigma_weight_floor
        if floor <= 0.0:
            return F.mse_loss(model(noisy, level), clean), {}
        per_patch = (model(noisy, level).float() - clean).pow(2).mean(dim=(1, 2, 3))
        weight = 1.0 / (sigma + floor)
        return (weight * per_patch).sum() / weight.sum(), {}

    def validate(self, model: nn.Module) -> dict[str, float]:
        return self.score(model)

    @torch.no_grad()
    def score(self, denoise: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """PSNRs of ``denoise`` ((1, C, H, W) noisy -> denoised, on [0, 1]) on the validation
        images, with the fixed-seed noise of ``validate``: a network, or a whole inference path."""
        gen = torch.Generator().manual_seed(VAL_SEED)
        metrics: dict[str, float] = {}
        for s in VAL_SIGMAS:
            for protocol, eight_bit in (("", False), ("_8bit", True)):
                values = []
                for img in self.val:
                    clean = img.float().div(255.0)[None]
                    normal = torch.randn(clean.shape, generator=gen)
                    noisy = gaussian_noise(clean, s / 255.0, normal, eight_bit=eight_bit)
                    out = denoise(noisy.to(self.device)).cpu().clamp(0.0, 1.0)
                    values.append(float(psnr(out, clean)))
                metrics[f"psnr_{int(s)}{protocol}"] = sum(values) / len(values)
        metrics["psnr"] = sum(metrics[f"psnr_{int(s)}"] for s in VAL_SIGMAS) / len(VAL_SIGMAS)
        metrics["psnr_8bit"] = sum(metrics[f"psnr_{int(s)}_8bit"] for s in VAL_SIGMAS) / len(VAL_SIGMAS)
        metrics["val_loss"] = -(metrics["psnr"] + metrics["psnr_8bit"]) / 2.0
        return metrics
