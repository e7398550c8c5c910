"""``--time-budget``: the epochs planned to fit, and the limit held step by step, on a clock the test
moves (every optimiser step and every validation costs what the test says), so nothing here waits
or depends on the machine's speed."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from model.budget import TimeBudget, budget_epochs
from model.checkpoint import load_checkpoint

TINY = ("--hidden", "8", "16", "--extra-convs", "0", "--latent-dim", "4")


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_stops_before_a_step_that_would_leave_no_time_to_validate() -> None:
    clock = Clock()
    budget = TimeBudget(10.0, clock)
    assert not budget.spent(0.0)  # nothing measured yet: a step and no validation
    clock.now += 2.0
    budget.stepped()
    assert budget.step_s == 2.0
    assert not budget.spent(8.0)  # 8 + 2 is the budget, not past it
    assert budget.spent(8.5)
    budget.validated(3.0)
    assert not budget.spent(5.0) and budget.spent(5.5)  # 5.5 + 2 + 3 > 10
    assert budget.room_to_validate(7.0) and not budget.room_to_validate(7.5)


def test_the_plan_waits_for_the_calibration_then_fits_whole_epochs() -> None:
    clock = Clock()
    budget = TimeBudget(200.0, clock)
    assert budget.plan(500, 10.0, 500, 1) is None  # the measurement starts at the first epoch's end
    clock.now += 2.0
    assert budget.plan(700, 12.0, 500, 1) is None  # 200 steps: not yet
    clock.now += 1.0
    # 300 steps in 3 s: 10 ms/step; 187 s left, 95 % of it is 17765 steps: to step 18565, 37 epochs
    assert budget.plan(800, 13.0, 500, 1) == (37, pytest.approx(0.010))
    assert budget_epochs(200.0, 100.0, 500, 0.010, 500, 1) == 20
    assert budget_epochs(200.0, 250.0, 500, 0.010, 500, 1) == 2  # over budget: finish this epoch


@pytest.fixture()
def signals_kept() -> Iterator[None]:
    """``Trainer.set_up`` installs SIGINT and SIGTERM handlers: the test's process gets its own back."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def run_on_clock(data: Path, out: Path, monkeypatch: pytest.MonkeyPatch, step_s: float,
                 validation_s: float, *flags: str, first_batch_s: float = 0.0) -> tuple[int, Clock]:
    """``python -m model.train`` in this process on mnist-dae, on a ``Clock`` that each optimiser
    step moves by ``step_s``, each validation by ``validation_s`` and the wait for the first
    batch by ``first_batch_s``."""
    from model.train import parse_args
    from model.trainer import Trainer

    argv = ["--preset", "mnist-dae", "--data-dir", str(data), "--out", str(out), "--epochs", "1000",
            "--no-progress", "--device", "cpu", *TINY, *flags]
    clock = Clock()
    trainer = Trainer.set_up(parse_args(argv), argv, clock)
    trainer.load_data()
    trainer.build()
    step, validate, batches = trainer.opt.step, trainer.task.validate, trainer.task.batches

    def timed_step(*args: Any, **kwargs: Any) -> Any:
        clock.now += step_s
        return step(*args, **kwargs)

    def timed_validate(model: Any) -> dict[str, float]:
        clock.now += validation_s
        return validate(model)

    def slow_start(*args: Any) -> Iterator[Any]:
        clock.now += first_batch_s
        yield from batches(*args)

    monkeypatch.setattr(trainer.opt, "step", timed_step)
    monkeypatch.setattr(trainer.task, "validate", timed_validate)
    monkeypatch.setattr(trainer.task, "batches", slow_start)
    return trainer.fit(), clock


def state_of(out: Path) -> dict[str, Any]:
    return json.loads((out / ".state" / "state.json").read_text())


@pytest.mark.usefixtures("signals_kept")
def test_a_budget_shorter_than_the_calibration_stops_the_run_at_the_step_it_is_spent(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 s a step, 3 s a validation, 16 steps an epoch. Budget 40 s: epoch 0 ends at 16 s and
    validates (19 s); epoch 1 ends at 35 s and validates (38 s); the next step and its validation
    would end at 42 s, so the run stops at step 32 and, with a checkpoint already written, starts
    no validation that would end past 40 s."""
    out = tmp_path / "run"
    code, clock = run_on_clock(tiny_mnist_dir, out, monkeypatch, 1.0, 3.0, "--batch-size", "32",
                               "--time-budget", "40")
    assert code == 0
    state = state_of(out)
    assert state["step"] == 32 and [h["step"] for h in state["history"]] == [16, 32]
    assert clock.now - 1000.0 == state["elapsed_s"] == 38.0
    assert state["budget_max_steps"] == 32 and load_checkpoint(out).config.train.max_steps == 32
    training = load_checkpoint(out).meta["training"]
    assert training["time_budget_s"] == 40
    assert "--time-budget" not in training["command"]  # the command that trains the same 32 steps
    assert training["command"].endswith("--max-steps 32")


@pytest.mark.usefixtures("signals_kept")
def test_the_first_validation_runs_even_past_the_budget_and_a_resume_keeps_the_stop(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Budget 10 s at 1 s a step: the run stops at step 10, before its first epoch ends, and
    validates once (its only checkpoint), ending at 13 s. A --resume does not train past the stop;
    one with a larger --max-steps does."""
    out = tmp_path / "run"
    flags = ("--batch-size", "32", "--time-budget", "10")
    code, clock = run_on_clock(tiny_mnist_dir, out, monkeypatch, 1.0, 3.0, *flags)
    assert code == 0 and clock.now - 1000.0 == 13.0
    assert state_of(out)["step"] == 10 and load_checkpoint(out).meta["training"]["steps"] == 10
    code, clock = run_on_clock(tiny_mnist_dir, out, monkeypatch, 1.0, 3.0, *flags, "--resume")
    assert code == 0 and clock.now == 1000.0 and state_of(out)["step"] == 10  # nothing ran
    code, _ = run_on_clock(tiny_mnist_dir, out, monkeypatch, 1.0, 3.0, *flags[:2], "--resume",
                           "--max-steps", "12")
    assert code == 0 and state_of(out)["step"] == 12
    training = load_checkpoint(out).meta["training"]
    assert training["steps"] == 12 and training["time_budget_s"] == 10  # the run's, not forgotten


@pytest.mark.usefixtures("signals_kept")
def test_a_budget_spent_before_the_first_step_still_takes_one(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch takes 2 s to come, past a 1 s budget: the run takes one step and validates
    it (its only checkpoint). It records --max-steps 1, as --max-steps 0 would mean no limit at
    all, and a --resume keeps the stop."""
    out = tmp_path / "run"
    flags = ("--batch-size", "32", "--time-budget", "1")
    code, _ = run_on_clock(tiny_mnist_dir, out, monkeypatch, 1.0, 3.0, *flags, first_batch_s=2.0)
    assert code == 0 and state_of(out)["step"] == 1 and state_of(out)["budget_max_steps"] == 1
    meta = load_checkpoint(out).meta
    assert meta["config"]["train"]["max_steps"] == 1
    assert meta["training"]["command"].endswith("--max-steps 1")
    code, clock = run_on_clock(tiny_mnist_dir, out, monkeypatch, 1.0, 3.0, *flags, "--resume")
    assert code == 0 and clock.now == 1000.0 and state_of(out)["step"] == 1  # nothing ran


@pytest.mark.usefixtures("signals_kept")
def test_a_budget_past_the_calibration_trains_the_whole_epochs_that_fit(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1/128 s a step, 1/32 s a validation, 33 steps an epoch, budget 2 s, and a calibration of 66
    steps instead of 300 (test_the_plan_waits_for_the_calibration_then_fits_whole_epochs holds the
    300). The pace is measured from the end of epoch 1 (step 33) to the first epoch end 66 steps
    later (step 99, 0.84 s): 8.76 ms a step, which fits 6 whole epochs; they end at 1.73 s, within
    the budget."""
    monkeypatch.setattr("model.budget.CALIBRATION_STEPS", 66)
    out = tmp_path / "run"
    code, clock = run_on_clock(tiny_mnist_dir, out, monkeypatch, 1 / 128, 1 / 32,
                               "--batch-size", "16", "--time-budget", "2")
    assert code == 0
    state = state_of(out)
    assert state["budget_epochs"] == 6 and state["step"] == 6 * 33
    assert "budget_max_steps" not in state  # the plan, not the limit, ended it
    assert clock.now - 1000.0 <= 2.0
    meta = load_checkpoint(out).meta
    assert meta["config"]["train"]["epochs"] == 6
    assert meta["training"]["command"].endswith("--epochs 6")
    assert "--time-budget" not in meta["training"]["command"]
