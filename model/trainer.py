"""The training run behind ``python -m model.train``: set up, load the data, build, fit.

The loop does not wait for the device every step: it checks the loss for NaN/inf with a flag on the
device, read every ``CHECK_EVERY`` steps and before anything is saved (so no saved state holds a bad
step; under DDP the ranks agree on it, so all stop at the same step), and the progress bar reads the
loss at most as often as it redraws. It validates after every epoch, keeps the best checkpoint and
saves the training state every ``--save-every`` steps. ``--time-budget`` (``model.budget``) is
checked before every step. Ctrl-C and SIGTERM (docker stop) ask the loop
to stop: it finishes the step it is in, saves the state and exits with 130 (under DDP every rank
stops at the same step).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.budget import TimeBudget
from model.checkpoint import read_meta, save_checkpoint, write_config
from model.cli import UsageError, output_folder
from model.config import RunConfig
from model.device import resolve_device
from model.networks import build_model
from model.photo.pair import pin_kept
from model.presets import get_preset
from model.schedule import lr_at, planned_steps, recorded_command
from model.tasks import Task, make_task
from model.train_state import (
    STATE_DIR,
    data_fingerprint,
    load_state,
    refuse_overwrite,
    resume_info,
    save_state,
)
from model.warm_start import chain_of, warm_start

CHECK_EVERY = 100  # steps between reads of the non-finite-loss flag
OVERRIDES = {"train": ("epochs", "max_steps", "batch_size", "lr", "seed", "patches_per_epoch",
                       "sigma_weight_floor"),
             "model": ("hidden", "extra_convs", "latent_dim")}


def build_config(args: argparse.Namespace) -> RunConfig:
    """The preset with the command line's overrides."""
    cfg = get_preset(args.preset)
    for section, names in OVERRIDES.items():
        for name in names:
            value = getattr(args, name)
            if value is not None:
                setattr(getattr(cfg, section), name, value)
    return cfg


def _interrupt(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM before the loop starts: stop at once, there is nothing to save yet."""
    raise KeyboardInterrupt


class Trainer:
    """One run; ``model.train.train`` calls its steps in order."""

    task: Task
    model: nn.Module
    opt: torch.optim.Optimizer

    def __init__(self, args: argparse.Namespace, cfg: RunConfig, device: torch.device, rank: int,
                 world: int, info: dict[str, Any], clock: Callable[[], float] = time.monotonic) -> None:
        self.args, self.cfg, self.device, self.rank, self.world = args, cfg, device, rank, world
        self.clock = clock  # seconds: the run's elapsed time and its --time-budget
        self.budget = TimeBudget(args.time_budget, clock) if args.time_budget else None
        self.is_main = rank == 0
        self.launcher = (f"torchrun --nproc_per_node={world} -m model.train" if world > 1
                         else "python -m model.train")
        self.info = info  # what the state saves: step, position, history, the run as started
        self.saved: int | None = info["step"] if args.resume else None  # the step of the saved state
        self.gen = torch.Generator(device=device).manual_seed(cfg.train.seed * 7919 + rank)
        self.asked = False  # a signal asked to stop (``stopping``)
        # DDP: a CPU group agrees on signals and gathers the RNG states, without waiting for the GPU
        self.group = dist.new_group(backend="gloo") if world > 1 else None

    @classmethod
    def set_up(cls, args: argparse.Namespace, argv: list[str] | None,
               clock: Callable[[], float] = time.monotonic) -> Trainer:
        """Signals, device, the run's config (the preset + flags) checked against --out's state,
        process group and threads."""
        signal.signal(signal.SIGINT, _interrupt)  # even where a shell started us with SIGINT ignored
        signal.signal(signal.SIGTERM, _interrupt)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        cfg = build_config(args)
        device = resolve_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
        output_folder(args.out)
        run = {"config": cfg.to_dict(), "data": data_fingerprint(args.data_dir), "limit": args.limit,
               "world_size": world, "device": device.type}
        if args.resume:  # the same run, or a usage error
            info = resume_info(args.out / STATE_DIR, run)
        else:
            refuse_overwrite(args.out / STATE_DIR)
            info = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "history": [], "best_val": None,
                    "elapsed_s": 0.0, "init_from": None, "run": run,
                    "argv": list(sys.argv[1:] if argv is None else argv)}
        if world > 1:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(cfg.train.seed)
        if device.type == "cuda":  # fast, but not bit-reproducible (docs/training.md)
            torch.backends.cudnn.benchmark = True
        return cls(args, cfg, device, rank, world, info, clock)

    def load_data(self) -> None:
        self.task = make_task(self.cfg, self.args.data_dir, self.device, self.args.limit)
        batch, examples = self.cfg.train.batch_size, self.task.num_train()
        self.steps_per_epoch = examples // (batch * self.world)
        if self.steps_per_epoch == 0:
            ranks = f" x {self.world} processes" if self.world > 1 else ""
            raise UsageError(f"--batch-size {batch}{ranks} is more than an epoch's {examples} "
                             "training examples")
        self.total = planned_steps(self.cfg, self.steps_per_epoch)

    def build(self) -> None:
        """The network, fresh or from --init-from, its optimiser, and the state of --resume."""
        cfg, device = self.cfg, self.device
        self.model = build_model(cfg.model).to(device)
        if self.args.init_from:
            self.info["init_from"] = warm_start(self.model, self.args.init_from, cfg.model.channels)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr,
                                     weight_decay=cfg.train.weight_decay, fused=device.type == "cuda")
        if self.args.resume:
            load_state(self.args.out / STATE_DIR, self.model, self.opt, self.gen, self.rank)
            if self.info.get("budget_epochs"):  # the budget's cut stays; a --max-steps given wins
                self.budget = None  # and it is not applied again
                cfg.train.epochs = self.info["budget_epochs"]
                if self.args.max_steps is None and self.info.get("budget_max_steps") is not None:
                    cfg.train.max_steps = self.info["budget_max_steps"]
                self.total = planned_steps(cfg, self.steps_per_epoch)
        self.ddp: nn.Module = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.use_amp = device.type == "cuda" and cfg.train.amp
        self.amp_dtype = (torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported()
                          else torch.float16)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)

    def command(self) -> str:
        """The command that trains this run from scratch: the one that started it (not a --resume),
        with the epochs and step limit it ends with (a time budget's cut, a --resume's change)."""
        first, now = self.info["run"]["config"]["train"], self.cfg.train
        changed = {f"--{name.replace('_', '-')}": str(getattr(now, name))
                   for name in ("epochs", "max_steps") if getattr(now, name) != first[name]}
        budget = ("--time-budget",) if "budget_epochs" in self.info else ()
        return self.launcher + " " + shlex.join(recorded_command(self.info["argv"], changed, budget))

    def fit(self) -> int:
        """Train until the planned steps are done; 130 when a signal stopped it (the state saved)."""
        cfg, args = self.cfg, self.args
        previous = {sig: signal.signal(sig, self.ask_to_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        self.step: int = self.info["step"]
        self.started = self.clock() - self.info["elapsed_s"]
        self.bar = tqdm(total=self.total, initial=self.step, disable=not self.is_main or args.no_progress,
                        dynamic_ncols=True, desc=cfg.train.preset)
        self.bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self.checked = self.step
        self.epoch: int = self.info["epoch"]
        self.pos: int = self.info["batch_in_epoch"]  # batches of ``epoch`` already done
        self.loss = torch.tensor(float("nan"))
        self.shown = -math.inf  # when the progress bar last showed the loss
        try:
            while self.step < self.total and self.epoch < cfg.train.epochs:
                ended = self.train_epoch()
                if self.step < self.total and self.stopping():  # a signal: save at this step's end, leave
                    self.snapshot()
                    self.bar.close()
                    if self.is_main:
                        print(f"interrupted at step {self.step}; state saved, continue with --resume",
                              file=sys.stderr)
                    return 130
                if ended:
                    self.epoch, self.pos = self.epoch + 1, 0
                if self.budget and "budget_epochs" not in self.info:
                    self.apply_budget()
                self.check_finite()  # on every rank, before rank 0 validates and saves
                if self.is_main:
                    with self.signals_held():
                        self.keep_best(self.epoch + self.pos / self.steps_per_epoch, self.loss.item())
                self.snapshot()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.world > 1:
                dist.destroy_process_group()
        self.bar.close()
        if self.is_main:
            print(f"done: {self.step} steps, best val {self.info['best_val']:.5f}, "
                  f"checkpoint in {args.out}")
        return 0

    def train_epoch(self) -> bool:
        """The rest of the current epoch; False when the step limit or a signal stopped it early."""
        cfg, device, scaler = self.cfg, self.device, self.scaler
        use_amp, amp_dtype = self.use_amp, self.amp_dtype
        self.ddp.train()
        seen, tick = 0, self.clock()
        for i, batch in enumerate(self.task.batches(self.epoch, self.rank, self.world)):
            if i < self.pos:
                continue
            if self.step >= self.total or self.stop_before_step():
                return False
            for group in self.opt.param_groups:
                group["lr"] = lr_at(cfg, self.step, self.total)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                self.loss, parts = self.task.loss(self.ddp, batch, self.step, self.gen)
            self.bad |= ~torch.isfinite(self.loss.detach())
            self.opt.zero_grad(set_to_none=True)
            scaler.scale(self.loss).backward()
            if cfg.train.grad_clip:
                scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
            scaler.step(self.opt)
            scaler.update()
            self.step += 1
            self.pos = i + 1
            if self.budget:
                self.budget.stepped()
            seen += len(batch) * self.world
            now = self.clock()
            if not self.bar.disable and now - self.shown >= self.bar.mininterval:
                # reading the loss waits for the device: only as often as the bar redraws
                self.shown, rate = now, seen / max(1e-9, now - tick)
                self.bar.set_postfix(epoch=self.epoch, loss=f"{self.loss.item():.4f}", img_s=f"{rate:.0f}",
                                     **{k: f"{v.item():.2f}" for k, v in parts.items()}, refresh=False)
            self.bar.update(1)
            if self.step % CHECK_EVERY == 0:
                self.check_finite()
            if self.step % self.args.save_every == 0:
                self.snapshot()
        return True

    def ask_to_stop(self, signum: int, frame: object) -> None:
        """The handler of SIGINT and SIGTERM while training: the loop stops at the next step boundary,
        so a step is applied and counted whole or not at all."""
        self.asked = True

    def any_rank(self, *flags: bool) -> list[bool]:
        """``flags`` as every rank sees them: each true where any rank's is (one all_reduce)."""
        if self.world == 1:
            return list(flags)
        agreed = torch.tensor([int(f) for f in flags])
        dist.all_reduce(agreed, op=dist.ReduceOp.MAX, group=self.group)
        return [bool(f) for f in agreed.tolist()]

    def stopping(self) -> bool:
        """Whether a signal asked to stop; under DDP whether any rank's did, so that all stop together."""
        return self.any_rank(self.asked)[0]

    @contextlib.contextmanager
    def signals_held(self) -> Iterator[None]:
        """A signal held back while a file was written (``deferred_interrupt`` raises it once the file
        is whole) asks to stop, as one that came between two writes does."""
        try:
            yield
        except KeyboardInterrupt:
            self.asked = True

    def elapsed(self) -> float:
        return self.clock() - self.started

    def stop_before_step(self) -> bool:
        """Before a step: whether a signal asked to stop or the time budget is spent
        (``TimeBudget.spent``), on any rank (one agreement for both). A spent budget ends the run
        at this step, recorded as its ``--max-steps``; a run takes one step at least."""
        spent = self.budget is not None and self.budget.spent(self.elapsed()) and self.step > 0
        asked, spent = self.any_rank(self.asked, spent)
        if spent and not asked and self.budget is not None:
            self.cfg.train.max_steps = self.total = self.step
            self.info.update(budget_epochs=self.cfg.train.epochs, budget_max_steps=self.step,
                             budget_s=self.budget.seconds)
            if self.is_main:
                self.bar.write(f"time budget {self.budget.seconds:g} s spent: stopping at step {self.step}")
            self.record_cut()
        return asked or spent

    def apply_budget(self) -> None:
        """After a calibration phase, cut the epochs to what fits ``--time-budget``."""
        assert self.budget is not None
        planned = self.budget.plan(self.step, self.elapsed(), self.steps_per_epoch, self.epoch)
        if planned is None:
            return
        epochs, pace = planned
        if self.world > 1:  # every rank must stop at the same step
            agreed = torch.tensor([epochs], device=self.device)
            dist.broadcast(agreed, 0)
            epochs = int(agreed.item())
        self.cfg.train.epochs = min(self.cfg.train.epochs, epochs)
        self.info.update(budget_epochs=self.cfg.train.epochs, budget_s=self.budget.seconds)
        self.total = planned_steps(self.cfg, self.steps_per_epoch)
        self.bar.total = self.total
        if self.is_main:
            self.bar.write(f"time budget {self.args.time_budget:.0f} s: {pace * 1000:.1f} ms/step, "
                           f"training {self.cfg.train.epochs} epochs ({self.total} steps)")
        self.record_cut()

    def record_cut(self) -> None:
        """The time budget cut the run: the best checkpoint so far (rank 0) records the run's new
        epochs, step limit and command (its recipe is the same)."""
        out = self.args.out
        if self.is_main and (out / "config.json").is_file():
            meta = read_meta(out)
            meta["config"]["train"].update(epochs=self.cfg.train.epochs, max_steps=self.cfg.train.max_steps)
            meta["training"]["command"] = self.command()
            meta["training"]["chain"] = chain_of(self.info["init_from"], self.command(),
                                                 meta["training"]["steps"])
            write_config(out, meta)

    def check_finite(self) -> None:
        """Exit (status 1) when a loss since the last check was NaN or inf. Under DDP every rank calls
        this at the same step and the ranks agree, so that all stop there with the same message."""
        if self.checked == self.step:  # no step since: nothing new to read
            return
        seen = torch.zeros(self.world, dtype=torch.int32)  # the ranks whose loss went bad
        seen[self.rank] = int(self.bad)  # waits for the device
        if self.world > 1:
            dist.all_reduce(seen, op=dist.ReduceOp.MAX, group=self.group)
        if bool(seen.any()):
            kept = ("no training state had been saved" if self.saved is None
                    else f"the training state saved at step {self.saved} is kept")
            ranks = seen.nonzero().flatten().tolist()
            where = f" on rank{'s' * (len(ranks) > 1)} {', '.join(map(str, ranks))}" if self.world > 1 else ""
            # said before leaving: under torchrun, the first rank to exit gets the others terminated
            print(f"the loss became NaN or inf between steps {self.checked} and {self.step}{where}; "
                  f"{kept}", file=sys.stderr, flush=True)
            raise SystemExit(1)
        self.checked = self.step

    def snapshot(self) -> None:
        """Save the training state. Every rank takes part: the state keeps each one's RNG."""
        self.check_finite()
        rng = [self.gen.get_state()]
        if self.world > 1:
            rng = [torch.empty_like(rng[0]) for _ in range(self.world)]
            dist.all_gather(rng, self.gen.get_state(), group=self.group)
        if self.is_main:
            self.info.update(step=self.step, epoch=self.epoch, batch_in_epoch=self.pos,
                             elapsed_s=self.elapsed())
            with self.signals_held():
                save_state(self.args.out / STATE_DIR, self.model, self.opt, self.info, torch.stack(rng))
            self.bar.write(f"state saved at step {self.step}")
        self.saved = self.step

    def keep_best(self, epoch_done: float, last_loss: float) -> None:
        """Validate; write the checkpoint when this is the best validation loss so far (rank 0, once
        ``check_finite`` passed)."""
        budget = self.budget
        if budget and self.info["best_val"] is not None and not budget.room_to_validate(self.elapsed()):
            self.bar.write(f"time budget: no validation at step {self.step} (the last took "
                           f"{budget.validation_s:.1f} s, {budget.seconds - self.elapsed():.1f} s left)")
            return
        self.model.eval()
        tick = self.clock()
        metrics = self.task.validate(self.model)
        if budget:
            budget.validated(self.clock() - tick)
        entry = {"epoch": round(epoch_done, 3), "step": self.step, "train_loss": last_loss,
                 "elapsed_s": round(self.elapsed(), 1), **metrics}
        self.info["history"].append(entry)
        self.bar.write(json.dumps(entry))
        if self.info["best_val"] is not None and metrics["val_loss"] >= self.info["best_val"]:
            return
        self.info["best_val"] = metrics["val_loss"]
        init = self.info["init_from"]
        save_checkpoint(self.args.out, self.model, self.cfg, extra={
            "dataset": self.task.data_description,
            "training": {
                "command": self.command(),
                "time_budget_s": self.args.time_budget or self.info.get("budget_s"),
                "steps": self.step, "epochs": round(epoch_done, 3),
                "init_from": None if init is None else {k: init[k] for k in ("path", "weights_sha256")},
                "chain": chain_of(init, self.command(), self.step),
                "total_steps": sum(run["steps"] or 0 for run in chain_of(init, "", self.step)),
                "seed": self.cfg.train.seed, "device": str(self.device), "world_size": self.world,
                "duration_s": round(self.elapsed(), 1),
                "best_val": metrics, "history": self.info["history"],
            },
            "evaluation": {"metrics": {}, "command": None},
            **pin_kept(self.args.out),  # a colour network paired with the run since stays paired
        })
