"""Training: steps change weights, evaluation does not, runs are seeded, resumable and interruptible."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from model.checkpoint import load_checkpoint, sha256_file
from model.networks import build_model
from model.presets import get_preset
from model.schedule import recorded_command
from model.train import main
from tests.conftest import ROOT
from tests.model.commands import assert_one_line_mistake, run_main, run_module, train_tiny_flags

TORCHRUN = os.path.join(os.path.dirname(sys.executable), "torchrun")
needs_torchrun = pytest.mark.skipif(not os.access(TORCHRUN, os.X_OK),
                                    reason="torchrun is not installed beside this Python")


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
        assert ck.meta["config"]["train"]["lr_warmup_steps"] == 200  # the recipe's warm-up, recorded


def flags_of_run(checkpoint: Path, replace: dict[str, Path], *extra: str) -> list[str]:
    """The flags of the command that trained ``checkpoint`` (as its config.json records it), with
    the paths of ``replace`` (``{"--out": ...}``) and then ``extra``: the same run again."""
    words = shlex.split(load_checkpoint(checkpoint).meta["training"]["command"])
    assert words[:3] == ["python", "-m", "model.train"], words
    return [*recorded_command(words[3:], {flag: str(path) for flag, path in replace.items()}), *extra]


def test_same_seed_gives_the_same_weights(tiny_checkpoints: Path, tmp_path: Path) -> None:
    """The fixture's mnist-dae run (its own process) trained again here, with its seed and with
    another."""
    trained = tiny_checkpoints / "mnist-dae"
    for name, extra in (("same", ()), ("other", ("--seed", "1"))):
        result = run_main(main, *flags_of_run(trained, {"--out": tmp_path / name}, *extra))
        assert result.returncode == 0, result.stderr[-2000:]
    sha = sha256_file(trained / "model.safetensors")
    assert sha256_file(tmp_path / "same" / "model.safetensors") == sha
    assert sha256_file(tmp_path / "other" / "model.safetensors") != sha


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_a_finite_state(
    tiny_mnist_dir: Path, tmp_path: Path
) -> None:
    # the state is saved after every step: the first step's loss comes from the initial weights, so at
    # least the state after it is saved before the loss (lr 1e12) turns NaN or inf
    out, unsaved_out = tmp_path / "saved", tmp_path / "unsaved"
    result = run_main(main, *train_tiny_flags("mnist-dae", tiny_mnist_dir, out, "--max-steps", "300",
                                              "--lr", "1e12", "--save-every", "1"))
    unsaved = run_main(main, *train_tiny_flags("mnist-dae", tiny_mnist_dir, unsaved_out,
                                               "--max-steps", "300", "--lr", "1e12"))
    assert result.returncode == 1, result.stderr[-2000:]
    kept = re.search(r"became NaN or inf between steps \d+ and \d+; the training state saved at step "
                     r"(\d+) is kept", result.stderr)
    assert kept, result.stderr[-2000:]
    assert json.loads((out / ".state" / "state.json").read_text())["step"] == int(kept[1]) >= 1
    state = load_file(out / ".state" / "state.safetensors")
    assert all(torch.isfinite(t).all() for k, t in state.items() if k != "rng")
    # never saved: the epoch's end finds the NaN before its first save
    assert unsaved.returncode == 1, unsaved.stderr[-2000:]
    assert "became NaN or inf between steps 0 and 16; no training state had been saved" in unsaved.stderr
    assert not (unsaved_out / ".state").exists()


def saved_tensors(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / ".state" / "state.safetensors")


def test_resume_continues_from_the_saved_state(tiny_checkpoints: Path, tiny_mnist_dir: Path,
                                               tmp_path: Path) -> None:
    """The fixture's mnist-vae run (20 steps, never stopped) again: stopped at step 10 (in this
    process), then resumed by ``python -m model.train --resume``."""
    whole, out = tiny_checkpoints / "mnist-vae", tmp_path / "run"
    first = run_main(main, *flags_of_run(whole, {"--out": out}, "--max-steps", "10"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads((out / ".state" / "state.json").read_text())["step"] == 10
    # another run's flags, or a fresh run, would mix two runs in one folder: refused, nothing touched
    before = saved_tensors(out)
    other_data, moved = tmp_path / "other-data", tmp_path / "moved"  # not the data it trained on
    shutil.copytree(tiny_mnist_dir, other_data)
    with (other_data / "t10k-images-idx3-ubyte.gz").open("ab") as fh:
        fh.write(b"\0")
    other, fresh, elsewhere = (run_main(main, *flags_of_run(whole, paths, *more)) for paths, more in (
        ({"--out": out}, ("--resume", "--batch-size", "16")),
        ({"--out": out}, ()),
        ({"--out": out, "--data-dir": other_data}, ("--resume",))))
    assert_one_line_mistake(other, "--resume", "config.train.batch_size was 32, now 16")
    assert_one_line_mistake(fresh, "already holds a run's training state (step 10)", "--resume")
    assert_one_line_mistake(elsewhere, "--resume", "data was ['2 files, ")
    assert all(torch.equal(v, before[k]) for k, v in saved_tensors(out).items())

    shutil.copytree(tiny_mnist_dir, moved)  # the same data in another place continues the run
    second = run_module("model.train", *flags_of_run(whole, {"--out": out, "--data-dir": moved}, "--resume"))
    assert second.returncode == 0, second.stderr[-2000:]
    state = json.loads((out / ".state" / "state.json").read_text())
    # 540 training images / 32 = 16 batches an epoch: stop at 10, finish epoch 0 at 16, stop at 20
    assert state["step"] == 20 and [h["step"] for h in state["history"]] == [10, 16, 20]
    # the same weights, optimiser moments and RNG as a run that was never stopped
    resumed, expected = saved_tensors(out), saved_tensors(whole)
    assert resumed.keys() == expected.keys() and any(k.startswith("opt.") for k in resumed)
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)
    whole_state = json.loads((whole / ".state" / "state.json").read_text())
    assert state["opt_scalars"] == whole_state["opt_scalars"]
    # the checkpoint records the command that trains it from scratch: the first one, 20 steps
    resumed_meta = load_checkpoint(out).meta["training"]
    expected_meta = load_checkpoint(whole).meta["training"]
    assert resumed_meta["steps"] == expected_meta["steps"] == 20
    assert [run["command"] for run in resumed_meta["chain"]] == [resumed_meta["command"]]
    assert "--resume" not in resumed_meta["command"]
    assert flags(resumed_meta["command"]) == {**flags(expected_meta["command"]), "out": out}


def flags(command: str) -> dict[str, Any]:
    """What a recorded ``python -m model.train ...`` command asks for, as parsed."""
    from model.train import parse_args

    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "model.train"], command
    return vars(parse_args(words[3:]))


def test_a_signal_during_a_step_stops_after_it(tiny_mnist_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal that lands between the optimiser's update and the step count waits for the count."""
    from model.train import parse_args
    from model.trainer import Trainer

    argv = ["--preset", "mnist-dae", "--data-dir", str(tiny_mnist_dir), "--out", str(tmp_path / "run"),
            "--max-steps", "8", "--batch-size", "32", "--no-progress", "--device", "cpu"]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        trainer = Trainer.set_up(parse_args(argv), argv)
        trainer.load_data()
        trainer.build()
        update = trainer.opt.step
        updates: list[int] = []

        def update_then_signal(*args: Any, **kwargs: Any) -> Any:
            result = update(*args, **kwargs)
            updates.append(1)
            if len(updates) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # the weights are updated, the step not yet counted
            return result

        monkeypatch.setattr(trainer.opt, "step", update_then_signal)
        assert trainer.fit() == 130
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert json.loads((tmp_path / "run" / ".state" / "state.json").read_text())["step"] == len(updates) == 3
    saved = saved_tensors(tmp_path / "run")
    assert all(torch.equal(saved[f"model.{k}"], v) for k, v in trainer.model.state_dict().items())


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
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.stdout is not None
    watchdog = threading.Timer(300, proc.kill)  # a run that never says it saved ends the wait below
    watchdog.start()
    # signalled mid-training, once the first checkpoint is written: the epoch's validation line comes
    # before the checkpoint, the state saved after it; each line is read as the trainer writes it
    validated = False
    for line in proc.stdout:
        validated = validated or line.startswith("{")
        if validated and line.startswith("state saved at step"):
            break
    else:
        pytest.fail(f"training never got going: exit {proc.wait()}")
    watchdog.cancel()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "continue with --resume" in err
    load_checkpoint(out)  # whole: hash and shapes verify
    step = json.loads((out / ".state" / "state.json").read_text())["step"]
    assert step > 0
    leftovers = [p.name for p in out.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers  # no temporary files left behind
    resumed = run_main(main, *train_tiny_flags("mnist-dae", tiny_mnist_dir, out, "--resume",
                                               "--max-steps", str(step + 3), "--batch-size", "16",
                                               "--epochs", "1000"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((out / ".state" / "state.json").read_text())["step"] == step + 3


def on_two_ranks(module: str, data: Path, out: Path, *flags: str,
                 **env: str) -> subprocess.CompletedProcess[str]:
    """``torchrun`` of ``module`` (``model.train``, or a test's wrapper of it) training mnist-dae on two
    CPU processes of one thread each; ``--tee`` prefixes each line with the rank that wrote it."""
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", "--tee", "3", "-m", module,
           "--preset", "mnist-dae", "--data-dir", str(data), "--out", str(out), "--batch-size", "16",
           "--no-progress", "--device", "cpu", "--threads", "1", *flags]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})


@needs_torchrun
def test_two_process_ddp_run_trains(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    result = on_two_ranks("model.train", tiny_mnist_dir, out, "--max-steps", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    ck = load_checkpoint(out)
    assert ck.meta["training"]["world_size"] == 2
    assert ck.meta["training"]["steps"] == 8
    assert ck.meta["training"]["command"].startswith("torchrun --nproc_per_node=2 -m model.train")
    fresh = build_model(get_preset("mnist-dae").model)
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in ck.model.state_dict().items())
    rng = saved_tensors(out)["rng"]  # one RNG state per rank, so that --resume gives each its own
    assert rng.shape[0] == 2 and not torch.equal(rng[0], rng[1])


@needs_torchrun
def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    """Rank 1's loss turns NaN at the last step (its NaN gradients then reach the weights of both): both
    ranks stop at the check before rank 0 validates and saves, with one message, and nothing is saved."""
    out = tmp_path / "ddp"
    result = on_two_ranks("tests.model.nan_on_rank", tiny_mnist_dir, out, "--max-steps", "8",
                          NAN_RANK="1", NAN_STEP="7")  # steps count from 0
    assert result.returncode == 1, result.stderr[-3000:]
    said = "the loss became NaN or inf between steps 0 and 8 on rank 1; no training state had been saved"
    for rank in (0, 1):  # --tee prefixes each line with the rank that wrote it
        assert f"[default{rank}]:{said}\n" in result.stderr, result.stderr[-3000:]
    assert not out.exists()  # no checkpoint of the NaN weights, no state


@needs_torchrun
def test_the_time_budgets_plan_is_said_once_under_ddp(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    """Every rank cuts its epochs to rank 0's plan; rank 0 alone says so. 16 steps an epoch: the pace
    is measured from the end of epoch 0 (step 16) to that of epoch 1 (step 32), where the plan is made
    (the calibration shortened to 8 steps)."""
    result = on_two_ranks("tests.model.short_calibration", tiny_mnist_dir, tmp_path / "ddp",
                          "--epochs", "1000", "--max-steps", "32", "--time-budget", "3000")
    assert result.returncode == 0, result.stderr[-3000:]
    plan = r"time budget 3000 s: [0-9.]+ ms/step, training \d+ epochs \(32 steps\)"
    said = re.findall(rf"^\[default(\d)\]:{plan}$", result.stdout, re.MULTILINE)
    assert said == ["0"], result.stdout[-3000:]
