"""Train a preset and write a checkpoint folder the service loads unchanged.

    python -m model.train --preset mnist-dae --data-dir ../shared/datasets/mnist --out checkpoints/mnist-dae
    torchrun --nproc_per_node=2 -m model.train --preset mnist-vae ...   # DistributedDataParallel

``--out`` receives the best model (by validation loss) as ``config.json`` + ``model.safetensors``;
``--out/.state/`` holds the last training state (weights, optimiser, step, RNG) for ``--resume``.
Every write is atomic and Ctrl-C is held back while writing, so an interrupt never tears a file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.checkpoint import (
    atomic_save_tensors,
    atomic_write_bytes,
    deferred_interrupt,
    read_meta,
    save_checkpoint,
    write_config,
)
from model.config import RunConfig
from model.device import resolve_device
from model.networks import build_model
from model.presets import get_preset
from model.tasks import make_task

STATE_DIR = ".state"
CHECK_EVERY = 100  # steps between reads of the non-finite-loss flag


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n")[0])
    p.add_argument("--preset", required=True, help="mnist-dae, mnist-vae or photo-denoiser")
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder to write")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patches-per-epoch", type=int, help="photo: patches drawn per epoch")
    p.add_argument("--sigma-weight-floor", type=float,
                   help="photo: weigh each patch's MSE by 1/(sigma + this), 0-1 scale (0: plain MSE)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from --out/.state")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images (smoke runs)")
    p.add_argument("--save-every", type=int, default=500, help="save training state every N steps")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="seconds: after a calibration phase, cut --epochs to the whole epochs that fit "
                   "(the checkpoint records the equivalent --epochs command)")
    arch = p.add_argument_group("architecture overrides (default: the preset's)")
    arch.add_argument("--hidden", type=int, nargs="+", help="channel width of each stage")
    arch.add_argument("--extra-convs", type=int, help="3x3 convs added to each stage")
    arch.add_argument("--latent-dim", type=int, help="size of the latent vector")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> RunConfig:
    cfg = get_preset(args.preset)
    for flag, field in (
        ("epochs", "epochs"),
        ("max_steps", "max_steps"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("seed", "seed"),
        ("patches_per_epoch", "patches_per_epoch"),
        ("sigma_weight_floor", "sigma_weight_floor"),
    ):
        value = getattr(args, flag)
        if value is not None:
            setattr(cfg.train, field, value)
    for flag in ("hidden", "extra_convs", "latent_dim"):
        value = getattr(args, flag)
        if value is not None:
            setattr(cfg.model, flag, value)
    return cfg


def planned_steps(cfg: RunConfig, steps_per_epoch: int) -> int:
    """Optimiser steps the run will take: its epochs, capped by ``max_steps`` when set."""
    total = cfg.train.epochs * steps_per_epoch
    return min(total, cfg.train.max_steps) if cfg.train.max_steps else total


def budget_epochs(budget_s: float, elapsed_s: float, step: int, sec_per_step: float,
                  steps_per_epoch: int, epoch: int) -> int:
    """The whole number of epochs a run can finish within ``budget_s`` at the measured pace."""
    steps_left = max(0.0, budget_s - elapsed_s) * 0.95 / max(sec_per_step, 1e-9)
    return max(epoch + 1, int((step + steps_left) // steps_per_epoch))


def recorded_command(argv: list[str], epochs: int | None) -> list[str]:
    """The training command as given, with a time budget replaced by the epochs it came to."""
    if epochs is None:
        return argv
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--time-budget", "--epochs"):
            skip = True
            continue
        if arg.startswith(("--time-budget=", "--epochs=")):
            continue
        out.append(arg)
    return [*out, "--epochs", str(epochs)]


def save_state(folder: Path, model: nn.Module, opt: torch.optim.Optimizer, info: dict[str, Any],
               gen: torch.Generator) -> None:
    """Weights, optimiser tensors and RNG as safetensors; the rest as JSON. No pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    opt_state = opt.state_dict()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, slots in opt_state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"opt.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tensors["rng"] = gen.get_state()
    info = {**info, "param_groups": opt_state["param_groups"], "opt_scalars": scalars}
    with deferred_interrupt():
        atomic_save_tensors(folder / "state.safetensors", tensors)
        atomic_write_bytes(folder / "state.json", json.dumps(info, indent=1).encode())


def load_state(folder: Path, model: nn.Module, opt: torch.optim.Optimizer,
               gen: torch.Generator) -> dict[str, Any]:
    from safetensors.torch import load_file

    if not (folder / "state.json").is_file():
        raise SystemExit(f"--resume: no training state in {folder}")
    info: dict[str, Any] = json.loads((folder / "state.json").read_text())
    tensors = load_file(folder / "state.safetensors")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, slot = key.split(".", 2)
            state.setdefault(int(idx), {})[slot] = value
    for idx, slots in info["opt_scalars"].items():
        state.setdefault(int(idx), {}).update(slots)
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    gen.set_state(tensors["rng"])
    return info


def lr_at(cfg: RunConfig, step: int, total: int) -> float:
    """Linear warm-up over 200 steps, then cosine decay to ``lr_min``."""
    t = cfg.train
    if step < 200:
        return t.lr * (step + 1) / 200
    progress = min(1.0, (step - 200) / max(1, total - 200))
    return t.lr_min + 0.5 * (t.lr - t.lr_min) * (1.0 + math.cos(math.pi * progress))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM (docker stop) both stop cleanly, even where a shell started us with SIGINT
    # ignored (background jobs): the state is saved and the run can --resume.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(args.device, local_rank)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if args.threads:
        torch.set_num_threads(args.threads)
    is_main = rank == 0
    cfg = build_config(args)
    torch.manual_seed(cfg.train.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    task = make_task(cfg, str(args.data_dir), device, args.limit)
    model = build_model(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            fused=device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(cfg.train.seed * 7919 + rank)
    steps_per_epoch = task.num_train() // (cfg.train.batch_size * world)
    if steps_per_epoch == 0:
        raise SystemExit("batch size larger than the training split")
    total = planned_steps(cfg, steps_per_epoch)

    out: Path = args.out
    info: dict[str, Any] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "history": [],
                            "best_val": None, "elapsed_s": 0.0}
    if args.resume:
        info = load_state(out / STATE_DIR, model, opt, gen)
        if info.get("budget_epochs"):
            cfg.train.epochs = info["budget_epochs"]
            total = planned_steps(cfg, steps_per_epoch)
    ddp: nn.Module = DistributedDataParallel(model) if world > 1 else model
    use_amp = device.type == "cuda" and cfg.train.amp
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    given = list(sys.argv[1:] if argv is None else argv)
    launcher = f"torchrun --nproc_per_node={world} -m model.train" if world > 1 else "python -m model.train"

    def command() -> str:
        return launcher + " " + shlex.join(recorded_command(given, info.get("budget_epochs")))

    step: int = info["step"]
    started = time.monotonic() - info["elapsed_s"]
    bar = tqdm(total=total, initial=step, disable=not is_main or args.no_progress,
               dynamic_ncols=True, desc=cfg.train.preset)

    # the loss is checked for NaN/inf without a host-device sync per step: a flag on the device,
    # read every CHECK_EVERY steps and before anything is saved, so no saved state holds a bad step
    bad = torch.zeros((), dtype=torch.bool, device=device)
    checked = step

    def check_finite() -> None:
        nonlocal checked
        if bool(bad):
            raise SystemExit(f"the loss became NaN or inf between steps {checked} and {step}; "
                             "the last saved state is kept")
        checked = step

    def snapshot(epoch: int, batch_in_epoch: int) -> None:
        check_finite()
        if is_main:
            info.update(step=step, epoch=epoch, batch_in_epoch=batch_in_epoch,
                        elapsed_s=time.monotonic() - started)
            save_state(out / STATE_DIR, model, opt, info, gen)

    def keep_best(epoch_done: float, last_loss: float) -> None:
        check_finite()
        model.eval()
        metrics = task.validate(model)
        entry = {"epoch": round(epoch_done, 3), "step": step, "train_loss": last_loss,
                 "elapsed_s": round(time.monotonic() - started, 1), **metrics}
        info["history"].append(entry)
        bar.write(json.dumps(entry))
        if info["best_val"] is None or metrics["val_loss"] < info["best_val"]:
            info["best_val"] = metrics["val_loss"]
            save_checkpoint(out, model, cfg, extra={
                "dataset": task.data_description,
                "training": {
                    "command": command(), "time_budget_s": args.time_budget or None,
                    "steps": step, "epochs": round(epoch_done, 3),
                    "seed": cfg.train.seed, "device": str(device), "world_size": world,
                    "duration_s": round(time.monotonic() - started, 1),
                    "best_val": metrics, "history": info["history"],
                },
                "evaluation": {"metrics": {}, "command": None},
            })

    epoch: int = info["epoch"]
    pos: int = info["batch_in_epoch"]  # batches of ``epoch`` already done
    calib: tuple[int, float] | None = None  # (step, time) where the pace measurement starts
    loss = torch.tensor(float("nan"))
    try:
        while step < total and epoch < cfg.train.epochs:
            ddp.train()
            seen, tick, stopped = 0, time.monotonic(), False
            for i, batch in enumerate(task.batches(epoch, rank, world)):
                if i < pos:
                    continue
                if step >= total:
                    stopped = True
                    break
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, step, total)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    loss, parts = task.loss(ddp, batch, step, gen)
                bad |= ~torch.isfinite(loss.detach())
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.train.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                scaler.step(opt)
                scaler.update()
                step += 1
                pos = i + 1
                seen += len(batch) * world
                if not bar.disable:  # reading the loss waits for the device
                    rate = seen / max(1e-9, time.monotonic() - tick)
                    bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}", img_s=f"{rate:.0f}",
                                    **{k: f"{v:.2f}" for k, v in parts.items()})
                bar.update(1)
                if step % CHECK_EVERY == 0:
                    check_finite()
                if step % args.save_every == 0:
                    snapshot(epoch, pos)
            if not stopped:
                epoch, pos = epoch + 1, 0
            if args.time_budget and "budget_epochs" not in info:
                now = time.monotonic()
                if calib is None:
                    calib = (step, now)
                elif step - calib[0] >= 300:
                    pace = (now - calib[1]) / (step - calib[0])
                    epochs = budget_epochs(args.time_budget, now - started, step, pace,
                                           steps_per_epoch, epoch)
                    if world > 1:  # every rank must stop at the same step
                        agreed = torch.tensor([epochs], device=device)
                        dist.broadcast(agreed, 0)
                        epochs = int(agreed.item())
                    cfg.train.epochs = min(cfg.train.epochs, epochs)
                    info["budget_epochs"] = cfg.train.epochs
                    total = planned_steps(cfg, steps_per_epoch)
                    bar.total = total
                    bar.write(f"time budget {args.time_budget:.0f} s: {pace * 1000:.1f} ms/step, "
                              f"training {cfg.train.epochs} epochs ({total} steps)")
                    if is_main and (out / "config.json").is_file():  # the best so far: same recipe
                        meta = read_meta(out)
                        meta["config"]["train"]["epochs"] = cfg.train.epochs
                        meta["training"]["command"] = command()
                        write_config(out, meta)
            if is_main:
                keep_best(epoch + pos / steps_per_epoch, loss.item())
            snapshot(epoch, pos)
    except KeyboardInterrupt:
        snapshot(epoch, pos)
        bar.close()
        print(f"interrupted at step {step}; state saved, continue with --resume", file=sys.stderr)
        return 130
    finally:
        if world > 1:
            dist.destroy_process_group()
    bar.close()
    if is_main:
        print(f"done: {step} steps, best val {info['best_val']:.5f}, checkpoint in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
