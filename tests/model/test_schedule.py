"""A run's plan: its steps, the learning rate at each, and the command recorded as it ended."""

from __future__ import annotations

import pytest

from model.presets import get_preset
from model.schedule import lr_at, planned_steps, recorded_command


def test_planned_steps_are_the_epochs_capped_by_max_steps() -> None:
    cfg = get_preset("mnist-dae")
    cfg.train.epochs, cfg.train.max_steps = 3, 0  # 0: no limit
    assert planned_steps(cfg, 16) == 48
    cfg.train.max_steps = 20
    assert planned_steps(cfg, 16) == 20
    cfg.train.max_steps = 100  # a cap past the epochs changes nothing
    assert planned_steps(cfg, 16) == 48


def test_the_learning_rate_warms_up_over_the_recorded_steps() -> None:
    cfg = get_preset("mnist-dae")
    cfg.train.lr_warmup_steps = 10
    assert lr_at(cfg, 4, 1000) == pytest.approx(cfg.train.lr * 5 / 10)
    assert lr_at(cfg, 10, 1000) == pytest.approx(cfg.train.lr)  # the peak, then the cosine decay
    assert lr_at(cfg, 1000, 1000) == pytest.approx(cfg.train.lr_min)


def test_recorded_command_replaces_the_flags_a_run_ended_with() -> None:
    argv = ["--preset", "mnist-vae", "--epochs", "1000", "--time-budget", "280", "--device", "cuda"]
    budget = ("--time-budget",)
    assert recorded_command(argv, {}) == argv
    assert recorded_command(argv, {"--epochs": "52"}, budget) == [
        "--preset", "mnist-vae", "--device", "cuda", "--epochs", "52"]
    assert recorded_command(["--time-budget=9", "--epochs=3"], {"--epochs": "4"}, budget) == ["--epochs", "4"]
    # a --resume that trained longer: the last --max-steps given wins, and is the one recorded
    argv = ["--max-steps", "20", "--lr", "1", "--max-steps", "10"]
    assert recorded_command(argv, {"--max-steps": "25"}) == ["--lr", "1", "--max-steps", "25"]
