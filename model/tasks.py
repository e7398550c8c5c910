"""What one training step and one validation pass mean for each kind of model.

A task turns a uint8 batch into a loss and its named parts (training; tensors left on the device,
which the loop reads only when it shows them) and the validation split into metrics; the training
loop in ``model.trainer`` is the same for all kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from model.cli import UsageError
from model.config import RunConfig
from model.data.loaders import Splits, binarize, load_splits, to_float
from model.kinds import kind_spec, resolve
from model.losses import dae_loss, vae_loss
from model.metrics import psnr_from_mse
from model.networks import VAE
from model.noise import corrupt

VAL_SEED = 1234


class Task(Protocol):
    cfg: RunConfig
    data_description: dict[str, Any]

    def num_train(self) -> int: ...

    def batches(self, epoch: int, rank: int, world: int) -> Iterator[torch.Tensor]: ...

    def loss(
        self, model: nn.Module, batch: torch.Tensor, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]: ...


class AutoencoderTask:
    """What the DAE and the VAE share: fixed-size images (MNIST or a folder), corrupted on the fly.

    A subclass says what a batch's loss is and what one validation chunk measures.
    """

    def __init__(self, cfg: RunConfig, splits: Splits, device: torch.device) -> None:
        self.cfg = cfg
        self.splits = splits
        self.device = device
        self.data_description = splits.description

    @classmethod
    def from_dirs(cls, cfg: RunConfig, data_dirs: list[Path], device: torch.device,
                  limit: int = 0) -> AutoencoderTask:
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
        return cls(cfg, splits, device)

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

    def loss(
        self, model: nn.Module, batch: torch.Tensor, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def _measure(self, model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor,
                 gen: torch.Generator) -> dict[str, float]:
        """One validation chunk's means; ``validate`` averages them over the split."""
        raise NotImplementedError

    def _summary(self, metrics: dict[str, float]) -> dict[str, float]:
        """The split's means completed with ``val_loss`` (lower is better)."""
        raise NotImplementedError

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        """Fixed-seed validation over the held-out split, in chunks of 500 images."""
        gen = torch.Generator(device=self.device).manual_seed(VAL_SEED)
        total: dict[str, float] = {}
        count = 0
        for start in range(0, len(self.splits.val), 500):
            noisy, clean = self._inputs(self.splits.val[start : start + 500], gen)
            n = len(clean)
            for key, value in self._measure(model, noisy, clean, gen).items():
                total[key] = total.get(key, 0.0) + value * n
            count += n
        return self._summary({key: value / count for key, value in total.items()})


class DAETask(AutoencoderTask):
    """The denoising autoencoder: MSE against the clean image; validation MSE and PSNR."""

    def loss(
        self, model: nn.Module, batch: torch.Tensor, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy, clean = self._inputs(batch, gen)
        return dae_loss(model(noisy), clean), {}

    def _measure(self, model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor,
                 gen: torch.Generator) -> dict[str, float]:
        return {"mse": dae_loss(model(noisy), clean).item()}

    def _summary(self, metrics: dict[str, float]) -> dict[str, float]:
        return {**metrics, "psnr": float(psnr_from_mse(metrics["mse"])), "val_loss": metrics["mse"]}


class VAETask(AutoencoderTask):
    """The VAE: reconstruction + KL (the KL weight warmed up); validation the negative ELBO."""

    def kl_weight(self, step: int) -> float:
        warm = self.cfg.train.kl_warmup_steps
        beta = self.cfg.train.beta
        return beta if warm <= 0 else beta * min(1.0, (step + 1) / warm)

    def loss(
        self, model: nn.Module, batch: torch.Tensor, step: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        noisy, clean = self._inputs(batch, gen)
        logits, posterior = model(noisy, gen)
        inner = model.module if hasattr(model, "module") else model  # DDP wraps the VAE
        assert isinstance(inner, VAE)
        return vae_loss(inner, clean, logits, posterior, self.kl_weight(step))

    def _measure(self, model: nn.Module, noisy: torch.Tensor, clean: torch.Tensor,
                 gen: torch.Generator) -> dict[str, float]:
        assert isinstance(model, VAE)
        logits, posterior = model(noisy, gen)
        loss, parts = vae_loss(model, clean, logits, posterior, 1.0)
        return {"neg_elbo": loss.item(), **{key: part.item() for key, part in parts.items()}}

    def _summary(self, metrics: dict[str, float]) -> dict[str, float]:
        return {**metrics, "val_loss": metrics["neg_elbo"]}


# what ``KindSpec.task`` names: (config, data folders, device, image limit) -> the task
TaskFactory = Callable[[RunConfig, list[Path], torch.device, int], Task]


def make_task(cfg: RunConfig, data_dirs: list[Path], device: torch.device, limit: int = 0) -> Task:
    """The task of ``cfg``'s kind (``KINDS``); photo models read every folder given, the others one."""
    try:
        spec = kind_spec(cfg.model.kind)
    except ValueError as exc:
        raise UsageError(f"no training task: {exc}") from exc
    factory: TaskFactory = resolve(spec.task)
    return factory(cfg, list(data_dirs), device, limit)
