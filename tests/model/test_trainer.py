"""Training: steps change weights, evaluation does not, runs are seeded, resumable and interruptible."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_checkpoint, sha256_file
from model.networks import build_model
from model.presets import get_preset
from model.tasks import make_task
from tests.conftest import ROOT, train_tiny


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


def test_every_preset_writes_a_checkpoint_the_loader_accepts(tiny_checkpoints: Path) -> None:
    for preset in ("mnist-dae", "mnist-vae"):
        ck = load_checkpoint(tiny_checkpoints / preset)
        training = ck.meta["training"]
        assert training["steps"] == 20
        assert training["command"].startswith(f"python -m model.train --preset {preset}")
        assert ck.meta["dataset"]["name"] == "mnist"
        assert ck.meta["dataset"]["val"] > 0 and ck.meta["dataset"]["train"] > 0
        assert [h["step"] for h in training["history"]][-1] == 20
        assert ck.sha256 == sha256_file(tiny_checkpoints / preset / "model.safetensors")


def test_same_seed_gives_the_same_weights(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = train_tiny("mnist-dae", tiny_mnist_dir, tmp_path / name, "--max-steps", "6")
        assert result.returncode == 0, result.stderr[-2000:]
    sha = [sha256_file(tmp_path / n / "model.safetensors") for n in ("a", "b")]
    assert sha[0] == sha[1]
    other = train_tiny("mnist-dae", tiny_mnist_dir, tmp_path / "c", "--max-steps", "6", "--seed", "1")
    assert other.returncode == 0
    assert sha256_file(tmp_path / "c" / "model.safetensors") != sha[0]


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_a_finite_state(
    tiny_mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = train_tiny("mnist-dae", tiny_mnist_dir, out, "--max-steps", "300", "--lr", "1e12",
                        "--save-every", "2")
    assert result.returncode != 0
    assert "became NaN or inf between steps" in result.stderr
    state = out / ".state" / "state.safetensors"
    if state.is_file():  # whatever was saved before the check fired holds no NaN
        from safetensors.torch import load_file

        assert all(torch.isfinite(t).all() for k, t in load_file(state).items() if k != "rng")


def test_resume_continues_from_the_saved_state(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train_tiny("mnist-vae", tiny_mnist_dir, out, "--max-steps", "10")
    assert first.returncode == 0, first.stderr[-2000:]
    state = json.loads((out / ".state" / "state.json").read_text())
    assert state["step"] == 10
    second = train_tiny("mnist-vae", tiny_mnist_dir, out, "--max-steps", "25", "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    state = json.loads((out / ".state" / "state.json").read_text())
    assert state["step"] == 25
    # 540 training images / 32 = 16 batches an epoch: stop at 10, finish epoch 0 at 16, stop at 25
    assert [h["step"] for h in state["history"]] == [10, 16, 25]


def saved_step(out: Path) -> int:
    """The step of a run's last snapshot, 0 before the first one (or while one is replaced)."""
    try:
        return int(json.loads((out / ".state" / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_leaves_a_whole_checkpoint_and_resume_works(
    tiny_mnist_dir: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "model.train", "--preset", "mnist-dae", "--data-dir",
           str(tiny_mnist_dir), "--out", str(out), "--batch-size", "16", "--epochs", "1000",
           "--save-every", "5", "--no-progress", "--device", "cpu"]
    # started with SIGINT ignored, as a shell's background job would be: training must still stop
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 300
    first = 0
    # signalled mid-training: after the first checkpoint, at the snapshot after it
    while not (out / "config.json").exists() or saved_step(out) <= first:
        if not first and (out / "config.json").exists():
            first = max(1, saved_step(out))
        assert time.monotonic() < deadline and proc.poll() is None, "training never got going"
        time.sleep(0.2)  # polling another process's files
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "continue with --resume" in err
    load_checkpoint(out)  # whole: hash and shapes verify
    step = json.loads((out / ".state" / "state.json").read_text())["step"]
    assert step > 0
    leftovers = [p.name for p in out.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers  # no temporary files left behind
    resumed = train_tiny("mnist-dae", tiny_mnist_dir, out, "--resume", "--max-steps", str(step + 3),
                         "--batch-size", "16", "--epochs", "1000")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / ".state" / "state.json").read_text())["step"] == step + 3


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
                    reason="torchrun is not installed beside this Python")
def test_two_process_ddp_run_trains(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = tmp_path / "ddp"
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "model.train", "--preset", "mnist-dae",
           "--data-dir", str(tiny_mnist_dir), "--out", str(out), "--max-steps", "8", "--batch-size", "16",
           "--no-progress", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    ck = load_checkpoint(out)
    assert ck.meta["training"]["world_size"] == 2
    assert ck.meta["training"]["steps"] == 8
    assert ck.meta["training"]["command"].startswith("torchrun --nproc_per_node=2 -m model.train")
    fresh = build_model(get_preset("mnist-dae").model)
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in ck.model.state_dict().items())


def test_recorded_command_replaces_a_time_budget_with_its_epochs() -> None:
    from model.trainer import budget_epochs, recorded_command

    argv = ["--preset", "mnist-vae", "--epochs", "1000", "--time-budget", "280", "--device", "cuda"]
    assert recorded_command(argv, None) == argv
    assert recorded_command(argv, 52) == ["--preset", "mnist-vae", "--device", "cuda", "--epochs", "52"]
    assert recorded_command(["--time-budget=9", "--epochs=3"], 4) == ["--epochs", "4"]
    # 100 s left at 10 ms/step is 9500 steps (5 % margin): from step 500, 10000 steps = 20 epochs
    assert budget_epochs(200.0, 100.0, 500, 0.010, 500, 1) == 20
    assert budget_epochs(200.0, 250.0, 500, 0.010, 500, 1) == 2  # over budget: finish this epoch


def test_time_budget_trains_whole_epochs_and_records_them(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "budget"
    result = train_tiny("mnist-vae", tiny_mnist_dir, out, "--max-steps", "0", "--epochs", "1000",
                        "--batch-size", "16", "--hidden", "8", "16", "--extra-convs", "0",
                        "--latent-dim", "4", "--time-budget", "12")
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((out / "config.json").read_text())
    training, train_cfg = meta["training"], meta["config"]["train"]
    epochs = train_cfg["epochs"]
    assert 1 <= epochs < 1000  # cut to what fits, not the 1000 asked for
    assert training["time_budget_s"] == 12
    assert "--time-budget" not in training["command"]
    assert training["command"].endswith(f"--epochs {epochs}")
    assert "--hidden 8 16" in training["command"]
    assert meta["config"]["model"]["hidden"] == [8, 16] and meta["config"]["model"]["latent_dim"] == 4
    state = json.loads((out / ".state" / "state.json").read_text())
    assert state["step"] == epochs * (540 // 16) and state["budget_epochs"] == epochs
