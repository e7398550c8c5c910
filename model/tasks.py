"""What one training step and one validation pass mean for each kind of model.

A task turns a uint8 batch into a loss (training) and the validation split into metrics; the training
loop in ``model.train`` is the same for all kinds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from model.cli import UsageError
from model.config import RunConfig
from model.data.loaders import Splits, binarize, load_splits, to_float
from model.losses import dae_loss, vae_loss
from model.metrics import psnr_from_mse
from model.networks import VAE
from model.noise import corrupt
from model.photo.task import PhotoTask

VAL_SEED = 1234


class Task(Protocol):
    cfg: RunConfig
    data_description: dict[str, Any]

    def num_train(self) -> int: ...

    def batches(self, epoch: int, rank: int, world: int) -> Iterator[torch.Tensor]: ...

    def loss(
        self, model: nn.Module, batch: torch.Tensor, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]: ...

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]: ...


class AutoencoderTask:
    """DAE and VAE on fixed-size images (MNIST or a folder)."""

    def __init__(self, cfg: RunConfig, splits: Splits, device: torch.device) -> None:
        self.cfg = cfg
        self.splits = splits
        self.device = device
        self.data_description = splits.description

    def num_train(self) -> int:
        return len(self.splits.train)

    def batches(self, epoch: int, rank: int, world: int) -> Iterator[torch.Tensor]:
        bs = self.cfg.train.batch_size
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 1000 + epoch)
        perm = torch.randperm(len(self.splits.train), generator=gen)
        per_rank = len(perm) // world  # equal shares keep DDP ranks in step
        mine = perm[rank * per_rank : (rank + 1) * per_rank]
        for start in range(0, len(mine) - bs + 1, bs):
            yield self.splits.train[mine[start : start + bs]]

    def _inputs(
        self, batch: torch.Tensor, gen: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        clean = to_float(batch.to(self.device, non_blocking=True))
        if self.cfg.train.binarize:
            clean = binarize(clean, gen)
        return corrupt(clean, self.cfg.noise, gen), clean

    def kl_weight(self, step: int) -> float:
        warm = self.cfg.train.kl_warmup_steps
        beta = self.cfg.train.beta
        return beta if warm <= 0 else beta * min(1.0, (step + 1) / warm)

    def loss(
        self, model: nn.Module, batch: torch.Tensor, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        noisy, clean = self._inputs(batch, gen)
        if self.cfg.model.kind == "vae":
            logits, posterior = model(noisy, gen)
            inner = model.module if hasattr(model, "module") else model
            assert isinstance(inner, VAE)
            return vae_loss(inner, clean, logits, posterior, self.kl_weight(step))
        loss = dae_loss(model(noisy), clean)
        return loss, {}

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        """Fixed-seed validation: the DAE's MSE/PSNR on noisy inputs, the VAE's negative ELBO."""
        gen = torch.Generator(device=self.device).manual_seed(VAL_SEED)
        total: dict[str, float] = {}
        count = 0
        for start in range(0, len(self.splits.val), 500):
            noisy, clean = self._inputs(self.splits.val[start : start + 500], gen)
            n = len(clean)
            if self.cfg.model.kind == "vae":
                assert isinstance(model, VAE)
                logits, posterior = model(noisy, gen)
                loss, parts = vae_loss(model, clean, logits, posterior, 1.0)
                values = {"neg_elbo": loss.item(), **parts}
            else:
                values = {"mse": dae_loss(model(noisy), clean).item()}
            for key, value in values.items():
                total[key] = total.get(key, 0.0) + value * n
            count += n
        metrics = {key: value / count for key, value in total.items()}
        if "mse" in metrics:
            metrics["psnr"] = float(psnr_from_mse(metrics["mse"]))
        metrics["val_loss"] = metrics.get("neg_elbo", metrics.get("mse", 0.0))
        return metrics


def make_task(cfg: RunConfig, data_dirs: list[Path], device: torch.device, limit: int = 0) -> Task:
    """The task of ``cfg``'s kind; photo models read every folder given, the others one."""
    if cfg.model.kind == "photo":
        return PhotoTask(cfg, list(data_dirs), device, limit)
    if len(data_dirs) != 1:
        raise UsageError(f"--data-dir: {cfg.train.preset} reads one folder, got {len(data_dirs)}")
    splits = load_splits(
        cfg.train.dataset,
        data_dirs[0],
        cfg.model.channels,
        (cfg.model.image_size[0], cfg.model.image_size[1]),
        cfg.train.val_fraction,
        limit,
    )
    return AutoencoderTask(cfg, splits, device)
