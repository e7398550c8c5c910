"""Evaluation of the MNIST autoencoders (``python -m model.evaluate`` on a DAE or VAE checkpoint).

Writes metrics.json, metrics.md and PNG figures to ``--out``:

Denoising autoencoders: PSNR and SSIM on the whole test split with Gaussian noise on the [0, 1] scale,
clipped to [0, 1], next to the noisy input, a 3x3 median filter and BM3D (told the true sigma; BM3D
runs on the first ``--bm3d-limit`` images, and every method is also reported on that subset).
VAEs: importance-weighted NLL in nats on dynamically binarised test digits (k = 1000 on the split,
k = 5000 on a 1000-image subset) and the negative ELBO.
``--update-checkpoint`` records the metrics and this exact command in the checkpoint's config.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from model.checkpoint import Checkpoint, load_checkpoint, write_config
from model.cli import UsageError
from model.data.loaders import binarize, load_test, to_float
from model.device import resolve_device
from model.figures import grid, loss_curves, rows_figure
from model.metrics import psnr
from model.networks import VAE
from model.noise import gaussian_noise
from model.scoring import iwae_nll
from model.train_state import STATE_DIR

EVAL_SEED = 2024
CHECK_IMAGES = 300  # the small, fast subset that CI re-measures against config.json
DEFAULT_SIGMAS = [0.1, 0.3, 0.5]  # on the [0, 1] scale


def ssim(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    return np.array(
        [structural_similarity(a[0], b[0], data_range=1.0) for a, b in zip(x, ref, strict=True)]
    )


def median3(x: np.ndarray) -> np.ndarray:
    from scipy.ndimage import median_filter

    return np.stack([median_filter(img, size=(1, 3, 3), mode="reflect") for img in x])


def run_bm3d(x: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return np.stack([np.clip(bm3d.bm3d(img[0], sigma_psd=sigma), 0, 1)[None] for img in x])


@torch.no_grad()
def batched(fn: Any, x: torch.Tensor, device: torch.device, bs: int = 500) -> torch.Tensor:
    return torch.cat([fn(x[i : i + bs].to(device)).cpu() for i in range(0, len(x), bs)])


def summarise(values: dict[str, np.ndarray], n_sub: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, arr in values.items():
        out[name] = round(float(arr.mean()), 3)
        if n_sub and len(arr) > n_sub:
            out[f"{name}_first{n_sub}"] = round(float(arr[:n_sub].mean()), 3)
    return out


def evaluate_denoising(ck: Checkpoint, clean: torch.Tensor, args: argparse.Namespace,
                       device: torch.device) -> tuple[dict[str, Any], dict[float, torch.Tensor]]:
    model = ck.model
    results: dict[str, Any] = {"images": len(clean), "bm3d_images": min(args.bm3d_limit, len(clean))}
    examples: dict[float, torch.Tensor] = {}
    ref = clean.numpy()
    for sigma in args.sigmas:
        gen = torch.Generator().manual_seed(EVAL_SEED + round(sigma * 1000))
        noisy = gaussian_noise(clean, sigma, torch.randn(clean.shape, generator=gen), clip=True)
        started = time.monotonic()
        out = batched(model.denoise, noisy, device)
        model_s = time.monotonic() - started
        methods = {"noisy": noisy.numpy(), "median3": median3(noisy.numpy()), "model": out.numpy()}
        per: dict[str, np.ndarray] = {}
        for name, arr in methods.items():
            per[f"{name}_psnr"] = psnr(arr, ref, axis=(1, 2, 3))
            per[f"{name}_ssim"] = ssim(arr, ref)
        n_b = results["bm3d_images"]
        if n_b:
            b = run_bm3d(noisy[:n_b].numpy(), sigma)
            results.setdefault("bm3d", {})[str(sigma)] = {
                "psnr": round(float(psnr(b, ref[:n_b], axis=(1, 2, 3)).mean()), 3),
                "ssim": round(float(ssim(b, ref[:n_b]).mean()), 3),
            }
        results[str(sigma)] = summarise(per, n_b)
        results[str(sigma)]["model_ms_per_image"] = round(1000 * model_s / len(clean), 4)
        examples[sigma] = torch.stack([noisy[:10], out[:10], clean[:10]])
    return results, examples


def evaluate_vae(model: VAE, clean: torch.Tensor, args: argparse.Namespace,
                 device: torch.device) -> dict[str, Any]:
    binary = binarize(clean, torch.Generator().manual_seed(EVAL_SEED))
    gen = torch.Generator().manual_seed(EVAL_SEED)  # on the CPU: the same draws on any device

    def nll_of(x: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        nlls, elbos = [], []
        for i in range(0, len(x), 100):
            nll, neg_elbo = iwae_nll(model, x[i : i + 100].to(device), k, chunk=100, generator=gen)
            nlls.append(nll.cpu())
            elbos.append(neg_elbo.cpu())
        return torch.cat(nlls).numpy(), torch.cat(elbos).numpy()

    started = time.monotonic()
    check_nll, _ = nll_of(binary[:CHECK_IMAGES], 100)
    nll, neg_elbo = nll_of(binary, args.k)
    results: dict[str, Any] = {
        "images": len(binary),
        "binarisation": f"dynamic, torch seed {EVAL_SEED}",
        f"nll_k{args.k}": round(float(nll.mean()), 3),
        "neg_elbo": round(float(neg_elbo.mean()), 3),
        "check": {"images": min(CHECK_IMAGES, len(binary)), "k": 100,
                  "nll": round(float(check_nll.mean()), 3)},
    }
    n_big = min(args.k_big_images, len(binary))
    if n_big:
        big, _ = nll_of(binary[:n_big], args.k_big)
        results[f"nll_k{args.k_big}_first{n_big}"] = round(float(big.mean()), 3)
        results[f"nll_k{args.k}_first{n_big}"] = round(float(nll[:n_big].mean()), 3)
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def markdown(name: str, metrics: dict[str, Any]) -> str:
    lines = [f"# Evaluation of `{name}`", ""]
    if "denoising" in metrics:
        d = metrics["denoising"]
        n_b = d["bm3d_images"]
        lines += [f"Gaussian noise on [0, 1], clipped; PSNR dB / SSIM on {d['images']} test images "
                  f"(BM3D, told sigma, on the first {n_b}).", "",
                  "| sigma | noisy | median 3x3 | BM3D (subset) | model | model (same subset) |",
                  "|---|---|---|---|---|---|"]
        for sigma, row in d.items():
            if not isinstance(row, dict) or "model_psnr" not in row:
                continue
            b = d.get("bm3d", {}).get(sigma, {})
            bm = f"{b['psnr']:.2f} / {b['ssim']:.3f}" if b else "-"
            sub = row.get(f"model_psnr_first{n_b}")
            lines.append(
                f"| {sigma} | {row['noisy_psnr']:.2f} / {row['noisy_ssim']:.3f} | "
                f"{row['median3_psnr']:.2f} / {row['median3_ssim']:.3f} | {bm} | "
                f"**{row['model_psnr']:.2f}** / {row['model_ssim']:.3f} | "
                f"{'-' if sub is None else f'{sub:.2f}'} |")
    if "vae" in metrics:
        lines += ["", "| metric | nats |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in metrics["vae"].items()
                  if isinstance(v, float) and k != "seconds"]  # the time it took is no nats
    return "\n".join(lines) + "\n"


def report_dae(ck: Checkpoint, clean: torch.Tensor, args: argparse.Namespace,
               device: torch.device) -> dict[str, Any]:
    """The denoising metrics, and a figure per sigma in ``args.out``."""
    denoising, examples = evaluate_denoising(ck, clean, args, device)
    for sigma, rows in examples.items():
        rows_figure(list(rows), args.out / f"denoise_sigma{sigma}.png")
    return {"denoising": denoising}


def report_vae(ck: Checkpoint, clean: torch.Tensor, args: argparse.Namespace,
               device: torch.device) -> dict[str, Any]:
    """The likelihood metrics, and reconstructions, samples and an interpolation in ``args.out``."""
    vae = ck.model
    assert isinstance(vae, VAE)
    metrics = {"vae": evaluate_vae(vae, clean, args, device)}
    x = clean[:10].to(device)
    rows_figure([x.cpu(), vae.denoise(x).cpu()], args.out / "reconstructions.png")
    samples = vae.sample(64, torch.Generator(device=device).manual_seed(EVAL_SEED))
    grid(samples.cpu(), nrow=8, scale=3).save(args.out / "samples.png")
    ends = vae.encode(x[:2]).mode()
    t = torch.linspace(0, 1, 10, device=device)[:, None]
    path = vae.decode(ends[0] * (1 - t) + ends[1] * t)
    rows_figure([path.cpu()], args.out / "interpolation.png")
    return metrics


def training_curve(ck: Checkpoint) -> tuple[list[dict[str, Any]], float | None]:
    """The run's validations, each a history entry, and the epoch of the checkpoint (its best).

    ``config.json``'s history ends at the checkpoint; the whole run's is in ``.state/state.json``
    beside it, used when it is this checkpoint's run (its history starts with the checkpoint's).
    """
    saved: list[dict[str, Any]] = ck.meta.get("training", {}).get("history", [])
    best = saved[-1]["epoch"] if saved else None
    state = ck.path / STATE_DIR / "state.json"
    if state.is_file():
        try:
            whole = json.loads(state.read_text()).get("history", [])
        except (OSError, ValueError) as exc:
            print(f"loss_curves.png ends at the checkpoint's epoch: {state} is unreadable ({exc})",
                  file=sys.stderr)
            return saved, best
        if whole[: len(saved)] == saved:
            return whole, best
    return saved, best


Report = Callable[[Checkpoint, torch.Tensor, argparse.Namespace, torch.device], dict[str, Any]]


def evaluate_dae_checkpoint(args: argparse.Namespace, command: str) -> int:
    """``python -m model.evaluate`` on a DAE checkpoint (``KindSpec.evaluate``)."""
    return evaluate_autoencoder(args, command, report_dae)


def evaluate_vae_checkpoint(args: argparse.Namespace, command: str) -> int:
    """``python -m model.evaluate`` on a VAE checkpoint (``KindSpec.evaluate``)."""
    return evaluate_autoencoder(args, command, report_vae)


def evaluate_autoencoder(args: argparse.Namespace, command: str, report: Report) -> int:
    """Evaluate the DAE or VAE of ``args.checkpoint`` with its kind's ``report``; ``command`` is
    recorded with the metrics."""
    if args.speed_only:
        raise UsageError("--speed-only times a photo denoiser; "
                         f"{args.checkpoint} holds another kind of model")
    args.sigmas = args.sigmas or DEFAULT_SIGMAS
    args.bm3d_limit = 300 if args.bm3d_limit is None else args.bm3d_limit
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device or "auto", exact=True)
    ck = load_checkpoint(args.checkpoint, device)
    cfg = ck.config
    args.out.mkdir(parents=True, exist_ok=True)
    test = load_test(cfg.train.dataset, args.data_dir, cfg.model.channels,
                     (cfg.model.image_size[0], cfg.model.image_size[1]))
    if args.limit:
        test = test[: args.limit]
    clean = to_float(test)
    metrics: dict[str, Any] = {"checkpoint": str(args.checkpoint), "sha256": ck.sha256}
    started = time.monotonic()
    with torch.no_grad():
        metrics.update(report(ck, clean, args, device))
    metrics["seconds"] = round(time.monotonic() - started, 1)
    history, best = training_curve(ck)
    if not loss_curves(history, args.out / "loss_curves.png", ck.name, best):
        print("no loss_curves.png: matplotlib is not installed or the checkpoint has no training "
              "history", file=sys.stderr)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "metrics.md").write_text(markdown(ck.name, metrics))
    print(markdown(ck.name, metrics))
    if args.update_checkpoint:
        meta = dict(ck.meta)
        meta["evaluation"] = {"metrics": metrics, "command": command}
        write_config(args.checkpoint, meta)
    return 0
