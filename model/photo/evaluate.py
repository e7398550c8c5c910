"""Evaluate the photo denoiser on BSD68 (gray) and CBSD68 (colour) next to BM3D, the papers' way.

    python -m model.evaluate --checkpoint checkpoints/photo-denoiser \
        --data-dir ../shared/datasets/bsd68 --color-data-dir ../shared/datasets/cbsd68 \
        --out runs/eval-photo --bm3d-limit 3 --update-checkpoint

Protocol: white Gaussian noise of level sigma (0-255 scale) is added to the clean 8-bit image with a
fixed seed per (sigma, image), without clipping; the output is clipped to [0, 255] and rounded to 8
bits (what the service returns); PSNR on 0-255, averaged over images. The model runs blind (and, in
a second column, told sigma); BM3D (package ``bm3d``, CBM3D for colour) is told the true sigma and
sees the same noisy images. BM3D is slow on a CPU, so ``--bm3d-limit N`` runs it on the first N
images only; the model is then also reported on that subset. Writes ``metrics.json``, ``table.md``
and ``figure.png`` (noisy / model / BM3D / clean crops) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import load_checkpoint, read_meta, write_config
from model.data.loaders import load_image_folder
from model.device import resolve_device
from model.photo.inference import denoise_image

PUBLISHED = {  # dB, from the papers (BSD68 gray, CBSD68 colour)
    "bsd68": {"BM3D": {15: 31.07, 25: 28.57, 50: 25.62}, "DnCNN-B": {15: 31.61, 25: 29.16, 50: 26.23},
              "DRUNet": {15: 31.91, 25: 29.48, 50: 26.59}},
    "cbsd68": {"CBM3D": {15: 33.52, 25: 30.71, 50: 27.38}, "CDnCNN-B": {15: 33.89, 25: 31.23, 50: 27.92}},
}
SEED = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--data-dir", required=True, type=Path, help="BSD68 (gray)")
    p.add_argument("--color-data-dir", type=Path, help="CBSD68 (colour)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--sigmas", type=float, nargs="+", default=[15.0, 25.0, 50.0])
    p.add_argument("--color-sigmas", type=float, nargs="+", default=[25.0])
    p.add_argument("--limit", type=int, default=0, help="first N images only")
    p.add_argument("--bm3d", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--known-sigma", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the model told the true sigma")
    p.add_argument("--bm3d-limit", type=int, default=0, help="BM3D on the first N images (0: all)")
    p.add_argument("--bm3d-workers", type=int, default=1, help="BM3D worker processes")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (speed is that device's)")
    p.add_argument("--speed-size", type=int, default=1024, help="side of the timed square image")
    p.add_argument("--speed-only", action="store_true",
                   help="time the model on --device and add that to --out/metrics.json (the quality "
                   "figures of an earlier run, e.g. on a GPU, stay; the earlier speed moves to "
                   "speed_elsewhere)")
    p.add_argument("--update-checkpoint", action="store_true",
                   help="write the metrics and this command into the checkpoint's config.json")
    return p.parse_args(argv)


def noisy_version(clean: np.ndarray, sigma: float, index: int) -> np.ndarray:
    """clean uint8 (C, H, W) + fixed-seed N(0, sigma^2) on 0-255, unclipped, as float 0-1."""
    rng = np.random.default_rng([SEED, round(sigma * 100), index])
    return (clean.astype(np.float64) + sigma * rng.standard_normal(clean.shape)) / 255.0


def psnr_8bit(clean: np.ndarray, estimate: np.ndarray) -> float:
    """PSNR (dB, peak 255) of an estimate on 0-1, clipped and rounded to 8 bits."""
    est = np.clip(np.round(estimate * 255.0), 0, 255)
    mse = float(np.mean((est - clean.astype(np.float64)) ** 2))
    return 10.0 * np.log10(255.0**2 / max(mse, 1e-10))


def run_bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d  # evaluation-only dependency

    if noisy.shape[0] == 1:
        return np.asarray(bm3d.bm3d(noisy[0], sigma_psd=sigma / 255.0))[None]
    return np.asarray(bm3d.bm3d_rgb(noisy.transpose(1, 2, 0), sigma_psd=sigma / 255.0)).transpose(2, 0, 1)


def run_model(model: torch.nn.Module, noisy: np.ndarray, sigma: float | None) -> tuple[np.ndarray, float]:
    x = torch.from_numpy(noisy.astype(np.float32))[None]
    y, est = denoise_image(model, x, sigma=sigma)
    return y[0].cpu().numpy().astype(np.float64), est


def bm3d_job(clean: np.ndarray, sigma: float, index: int) -> tuple[float, float, np.ndarray | None]:
    """BM3D on image ``index`` at ``sigma`` (a worker process): PSNR, seconds, output of image 0."""
    tick = time.perf_counter()
    y = run_bm3d(noisy_version(clean, sigma, index), sigma)
    return psnr_8bit(clean, y), time.perf_counter() - tick, (y if index == 0 else None)


def evaluate_set(model: torch.nn.Module, images: list[np.ndarray], sigma: float, args: argparse.Namespace,
                 figure: list[np.ndarray], jobs: list[Future[tuple[float, float, np.ndarray | None]]],
                 ) -> dict[str, Any]:
    """The model on every image (blind, and told sigma); BM3D's results come from ``jobs``."""
    blind, known, est = [], [], []
    model_s = 0.0
    for i, clean in enumerate(images):
        noisy = noisy_version(clean, sigma, i)
        tick = time.perf_counter()
        y_blind, sigma_est = run_model(model, noisy, None)
        model_s += time.perf_counter() - tick
        blind.append(psnr_8bit(clean, y_blind))
        if args.known_sigma:
            known.append(psnr_8bit(clean, run_model(model, noisy, sigma)[0]))
        est.append(sigma_est)
        if i == 0:
            figure.extend([noisy, y_blind])
        print(f"  sigma {sigma:g} image {i + 1}/{len(images)}: model {blind[-1]:.2f} dB",
              file=sys.stderr, flush=True)
    result: dict[str, Any] = {
        "images": len(images), "model_blind": float(np.mean(blind)),
        "model_known_sigma": float(np.mean(known)) if known else None,
        "sigma_estimate_mean": float(np.mean(est)),
        "model_s_per_image": model_s / len(images),
    }
    if jobs:
        done = [job.result() for job in jobs]
        if done[0][2] is not None:
            figure.append(done[0][2])
        n = len(done)
        result.update(bm3d_images=n, bm3d=float(np.mean([d[0] for d in done])),
                      model_blind_on_bm3d_subset=float(np.mean(blind[:n])),
                      bm3d_s_per_image=float(np.mean([d[1] for d in done])))
        print(f"  sigma {sigma:g}: BM3D {result['bm3d']:.2f} dB on {n}, model "
              f"{result['model_blind_on_bm3d_subset']:.2f} dB on the same", file=sys.stderr, flush=True)
    figure.append(images[0] / 255.0)
    return result


def speed(model: torch.nn.Module, channels: int, size: int = 1024, repeats: int = 2) -> float:
    """In-process milliseconds per megapixel of ``denoise_image`` on a size x size image."""
    x = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0))
    denoise_image(model, x[..., :256, :256])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        denoise_image(model, x)[0].cpu()  # .cpu() waits for a GPU to finish
        best = min(best, time.perf_counter() - tick)
    return 1000.0 * best / (size * size / 1e6)


def save_figure(rows: list[list[np.ndarray]], path: Path, crop: int = 160) -> None:
    from PIL import Image

    tiles = []
    for row in rows:
        cells = []
        for img in row:
            arr = np.clip(np.round(img[:, :crop, :crop] * 255.0), 0, 255).astype(np.uint8)
            arr = np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr
            cells.append(np.pad(arr, ((0, 0), (2, 2), (2, 2)), constant_values=255))
        tiles.append(np.concatenate(cells, axis=2))
    width = max(t.shape[2] for t in tiles)
    tiles = [np.pad(t, ((0, 0), (0, 0), (0, width - t.shape[2])), constant_values=255) for t in tiles]
    Image.fromarray(np.concatenate(tiles, axis=1).transpose(1, 2, 0)).save(path)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def markdown(metrics: dict[str, Any]) -> str:
    lines = ["| set | σ | model, blind (all) | model, σ given (all) | σ estimated "
             "| model, blind (BM3D subset) | BM3D measured (subset) | BM3D published "
             "| DnCNN-B published | DRUNet published |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, per_sigma in metrics["sets"].items():
        pub = PUBLISHED[name]
        bm3d_key, dncnn_key = ("BM3D", "DnCNN-B") if name == "bsd68" else ("CBM3D", "CDnCNN-B")
        for key, r in per_sigma.items():
            s = int(float(key))
            subset = f"{r['model_blind_on_bm3d_subset']:.2f}" if "bm3d" in r else "–"
            bm = f"{r['bm3d']:.2f} (first {r['bm3d_images']})" if "bm3d" in r else "–"
            drunet = f"{pub['DRUNet'][s]:.2f}" if "DRUNet" in pub and s in pub["DRUNet"] else "–"
            lines.append(
                f"| {name.upper()} ({r['images']}) | {s} | {r['model_blind']:.2f} "
                f"| {_num(r['model_known_sigma'])} | {r['sigma_estimate_mean']:.1f} | {subset} | {bm} "
                f"| {pub[bm3d_key].get(s, float('nan')):.2f} "
                f"| {pub[dncnn_key].get(s, float('nan')):.2f} | {drunet} |")
    sp = metrics["speed_ms_per_mpx"]
    size = f"{sp['size']}×{sp['size']}"
    where = f"{sp['threads']} CPU threads" if sp.get("device", "cpu") == "cpu" else sp["device"]
    lines += ["", f"Speed, in-process ({where}, {size}): "
              f"gray {sp['gray']:.0f} ms/MP, colour {sp['rgb']:.0f} ms/MP."]
    for dev, other in metrics.get("speed_elsewhere", {}).items():
        lines.append(f"On {dev} (the quality run): gray {other['gray']:.1f} ms/MP, "
                     f"colour {other['rgb']:.1f} ms/MP.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, exact=True)
    ckpt = load_checkpoint(args.checkpoint, device)
    if ckpt.meta.get("kind") != "photo":
        raise SystemExit(f"{args.checkpoint} is not a photo denoiser")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m model.evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.speed_only:
        return speed_only(ckpt.model, args, device, command)
    sets = [("bsd68", args.data_dir, 1, args.sigmas)]
    if args.color_data_dir:
        sets.append(("cbsd68", args.color_data_dir, 3, args.color_sigmas))
    metrics: dict[str, Any] = {"sets": {}, "protocol": __doc__.split("Protocol: ")[1].split(" Writes")[0]}
    rows: list[list[np.ndarray]] = []
    loaded = []
    for name, folder, channels, sigmas in sets:
        images = load_image_folder(Path(folder), channels)
        loaded.append((name, images[: args.limit] if args.limit else images, sigmas))
    # BM3D runs in worker processes while the model works in this one
    with ProcessPoolExecutor(max_workers=max(1, args.bm3d_workers)) as pool:
        jobs = {}
        for name, images, sigmas in loaded:
            n_bm3d = min(args.bm3d_limit or len(images), len(images)) if args.bm3d else 0
            for sigma in sigmas:
                jobs[name, sigma] = [pool.submit(bm3d_job, images[i], sigma, i) for i in range(n_bm3d)]
        for name, images, sigmas in loaded:
            metrics["sets"][name] = {}
            for sigma in sigmas:
                row: list[np.ndarray] = []
                metrics["sets"][name][f"{sigma:g}"] = evaluate_set(
                    ckpt.model, images, sigma, args, row, jobs[name, sigma])
                rows.append(row)
    metrics["speed_ms_per_mpx"] = measure_speed(ckpt.model, args.speed_size, device)
    metrics["command"] = command
    save_figure(rows, args.out / "figure.png")
    write_results(metrics, args)
    return 0


def measure_speed(model: torch.nn.Module, size: int, device: torch.device) -> dict[str, Any]:
    return {"gray": speed(model, 1, size), "rgb": speed(model, 3, size),
            "threads": torch.get_num_threads(), "size": size, "device": str(device)}


def speed_only(model: torch.nn.Module, args: argparse.Namespace, device: torch.device,
               command: str) -> int:
    """Re-time the model here and merge that into the metrics an earlier run wrote to ``--out``."""
    path = args.out / "metrics.json"
    if not path.is_file():
        raise SystemExit(f"--speed-only: no {path} from an earlier evaluation to add the speed to")
    metrics: dict[str, Any] = json.loads(path.read_text())
    earlier = metrics.get("speed_ms_per_mpx")
    if earlier and earlier.get("device") != str(device):
        metrics.setdefault("speed_elsewhere", {})[earlier["device"]] = earlier
    metrics["speed_ms_per_mpx"] = measure_speed(model, args.speed_size, device)
    metrics["speed_command"] = command
    write_results(metrics, args)
    return 0


def write_results(metrics: dict[str, Any], args: argparse.Namespace) -> None:
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    table = markdown(metrics)
    (args.out / "table.md").write_text(table)
    print(table)
    if args.update_checkpoint:
        meta = read_meta(args.checkpoint)
        meta["evaluation"] = {"metrics": metrics, "command": metrics["command"]}
        write_config(args.checkpoint, meta)


if __name__ == "__main__":
    raise SystemExit(main())
