"""Tasks: what one training step and one validation pass mean for the DAE and the VAE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.networks import build_model
from model.presets import get_preset
from model.tasks import make_task


@pytest.mark.parametrize("preset", ["mnist-dae", "mnist-vae"])
def test_training_step_changes_weights_and_evaluation_does_not(tiny_mnist_dir: Path, preset: str) -> None:
    cfg = get_preset(preset)
    cfg.train.batch_size = 16
    task = make_task(cfg, [tiny_mnist_dir], torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    metrics = task.validate(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert metrics["val_loss"] > 0

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = next(iter(task.batches(0, 0, 1)))
    loss, _ = task.loss(model, batch, 0, torch.Generator().manual_seed(0))
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert "encoder.head.weight" in changed and "decoder.project.0.weight" in changed
