"""PNG figures for the evaluation report: image grids, strips and loss curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) float in [0, 1] -> uint8 (H, W) or (H, W, C)."""
    arr = (x.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    return arr


def grid(images: torch.Tensor, nrow: int, pad: int = 2, scale: int = 1) -> Image.Image:
    """Tile a batch (N, C, H, W) in [0, 1] into one image, ``nrow`` images per row."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    canvas = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[:, top : top + h, left : left + w] = images[i].float().cpu()
    img = Image.fromarray(to_uint8(canvas))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return img


def rows_figure(rows: list[torch.Tensor], path: Path, scale: int = 3) -> None:
    """Stack rows of equal length (each (N, C, H, W)) into one strip, e.g. noisy/denoised/clean."""
    nrow = rows[0].shape[0]
    grid(torch.cat(rows), nrow=nrow, scale=scale).save(path)


def loss_curves(history: list[dict[str, Any]], path: Path, title: str,
                best_epoch: float | None = None) -> bool:
    """Training and validation loss per epoch, ``best_epoch`` (the checkpoint's) marked; False when
    matplotlib is not installed or there is no history."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not history:
        return False
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(epochs, [h["train_loss"] for h in history], label="train (last batch)")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="gray", linestyle=":", label=f"checkpoint (epoch {best_epoch:g})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
