"""Evaluation of the photo denoiser on BSD68 (gray) and CBSD68 (colour), two protocols, beside BM3D.

    python -m model.evaluate --checkpoint checkpoints/photo-denoiser \
        --data-dir "$DATA/bsd68" --color-data-dir "$DATA/cbsd68" \
        --out runs/eval-photo --bm3d-limit 3 --update-checkpoint

Protocols. Papers' (``papers``, as published tables): white Gaussian noise of level sigma (0-255
scale) is added to the clean 8-bit image with a fixed seed per (sigma, image), without clipping.
8-bit (``8bit``, what users send): the same noisy image clipped to [0, 255] and rounded to 8 bits.
Either way the output is clipped to [0, 255] and rounded to 8 bits (what the service returns); PSNR
on 0-255, averaged over images. The model runs blind (and, in a second column, told sigma); BM3D
(package ``bm3d``, CBM3D for colour) is told the true sigma and sees the very same noisy images.
BM3D is slow on a CPU, so ``--bm3d-limit N`` runs it on the first N images only; the model is then
also reported on that subset. Writes ``metrics.json``, ``table.md`` and ``figure.png`` (noisy /
model / BM3D / clean crops) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import numpy as np
import torch

from model.checkpoint import read_meta, write_config
from model.cli import UsageError
from model.data.loaders import load_image_folder
from model.device import resolve_device
from model.metrics import psnr_8bit
from model.noise import gaussian_noise
from model.photo.bm3d_cache import Bm3dCache
from model.photo.inference import denoise_image, sigma_cap
from model.photo.pair import load_photo
from model.photo.report import markdown, save_figure

SEED = 0
DEFAULT_SIGMAS = [15.0, 25.0, 50.0]
PROTOCOLS = ("papers", "8bit")
RESULT_KEYS = {"papers": "sets", "8bit": "sets_8bit"}  # where metrics.json keeps each protocol

Job = Future[tuple[float, float, np.ndarray | None]]


def noisy_version(clean: np.ndarray, sigma: float, index: int, eight_bit: bool = False) -> np.ndarray:
    """clean uint8 (C, H, W) + fixed-seed N(0, sigma^2) on 0-255, as float 0-1 (8-bit: clipped and
    rounded to 8 bits; else unclipped)."""
    rng = np.random.default_rng([SEED, round(sigma * 100), index])
    normal = torch.from_numpy(rng.standard_normal(clean.shape))
    base = torch.from_numpy(clean.astype(np.float64) / 255.0)
    return gaussian_noise(base, sigma / 255.0, normal, eight_bit=eight_bit).numpy()


def run_bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d  # evaluation-only dependency

    if noisy.shape[0] == 1:
        return np.asarray(bm3d.bm3d(noisy[0], sigma_psd=sigma / 255.0))[None]
    return np.asarray(bm3d.bm3d_rgb(noisy.transpose(1, 2, 0), sigma_psd=sigma / 255.0)).transpose(2, 0, 1)


def run_model(model: torch.nn.Module, noisy: np.ndarray, sigma: float | None,
              cap: float) -> tuple[np.ndarray, float | None]:
    x = torch.from_numpy(noisy.astype(np.float32))[None]
    y, used = denoise_image(model, x, sigma=sigma, cap=cap)
    return y[0].cpu().numpy().astype(np.float64), used


def bm3d_job(clean: np.ndarray, sigma: float, index: int, eight_bit: bool,
             ) -> tuple[float, float, np.ndarray | None]:
    """BM3D on image ``index`` at ``sigma`` (a worker process): PSNR, seconds, output of image 0.
    The noisy image is made here, not sent: the pool keeps a job's arguments until it is done."""
    tick = time.perf_counter()
    y = run_bm3d(noisy_version(clean, sigma, index, eight_bit), sigma)
    return psnr_8bit(clean, y), time.perf_counter() - tick, (y if index == 0 else None)


def submit_bm3d(pool: ProcessPoolExecutor, cache: Bm3dCache, images: list[np.ndarray],
                sigma: float, eight_bit: bool, n: int) -> tuple[list[Job], list[str], int]:
    """BM3D's jobs on the first ``n`` images, their cache keys and how many the cache answered: a
    score the cache holds is a finished job, except image 0's, whose output the figure shows."""
    jobs: list[Job] = []
    keys, cached = [], 0
    for i, clean in enumerate(images[:n]):
        keys.append(cache.key(clean, noisy_version(clean, sigma, i, eight_bit), sigma))
        known = cache.get(keys[-1]) if i > 0 else None
        if known is None:
            jobs.append(pool.submit(bm3d_job, clean, sigma, i, eight_bit))
        else:
            jobs.append(Future())
            jobs[-1].set_result((*known, None))
            cached += 1
    return jobs, keys, cached


def evaluate_set(model: torch.nn.Module, images: list[np.ndarray], sigma: float, eight_bit: bool,
                 known_sigma: bool, figure: list[np.ndarray], jobs: list[Job], subset: int,
                 cap: float) -> dict[str, Any]:
    """The model on every image (blind, and told sigma, at most ``cap``); BM3D's results come from
    ``jobs``.

    The model's blind figure on the first ``subset`` images (BM3D's, when it ran) is reported too.
    """
    blind, known, est = [], [], []
    model_s = 0.0
    for i, clean in enumerate(images):
        noisy = noisy_version(clean, sigma, i, eight_bit)
        tick = time.perf_counter()
        y_blind, sigma_est = run_model(model, noisy, None, cap)
        model_s += time.perf_counter() - tick
        blind.append(psnr_8bit(clean, y_blind))
        if known_sigma:
            known.append(psnr_8bit(clean, run_model(model, noisy, sigma, cap)[0]))
        if sigma_est is not None:  # None: too small to estimate
            est.append(sigma_est)
        if i == 0:
            figure.extend([noisy, y_blind])
        print(f"  {'8-bit' if eight_bit else 'papers'} sigma {sigma:g} image {i + 1}/{len(images)}: "
              f"model {blind[-1]:.2f} dB", file=sys.stderr, flush=True)
    errors = np.asarray(est) / sigma - 1.0
    result: dict[str, Any] = {
        "images": len(images), "model_blind": float(np.mean(blind)),
        "model_known_sigma": float(np.mean(known)) if known else None,
        "sigma_estimate_mean": float(np.mean(est)) if est else None,
        "sigma_estimate_max_rel_error": float(np.max(np.abs(errors))) if est else None,
        "sigma_unestimated": len(images) - len(est),  # too small to estimate
        "model_s_per_image": model_s / len(images),
    }
    n_sub = len(jobs) or min(subset, len(images))
    if n_sub:
        result.update(subset_images=n_sub, model_blind_on_bm3d_subset=float(np.mean(blind[:n_sub])))
    if jobs:
        try:
            done = [job.result() for job in jobs]
        except BrokenProcessPool as exc:
            raise SystemExit(f"a BM3D worker process died (killed, or out of memory?): {exc}") from exc
        if done[0][2] is not None:
            figure.append(done[0][2])
        n = len(done)
        result.update(bm3d_images=n, bm3d=float(np.mean([d[0] for d in done])),
                      bm3d_s_per_image=float(np.mean([d[1] for d in done])))
        print(f"  sigma {sigma:g}: BM3D {result['bm3d']:.2f} dB on {n}, model "
              f"{result['model_blind_on_bm3d_subset']:.2f} dB on the same", file=sys.stderr, flush=True)
    figure.append(images[0] / 255.0)
    return result


def _terminated(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)


@contextmanager
def bm3d_workers(n: int) -> Iterator[ProcessPoolExecutor]:
    """Up to ``n`` worker processes for BM3D that end with the block, however it ends: a finished
    run has collected every result; an interrupted one (Ctrl-C, or SIGTERM, which leaves with exit
    status 143) stops them instead of waiting for the BM3D jobs still queued; a worker that dies
    (killed, out of memory) fails the run instead of leaving it waiting. Started with the first job,
    spawned, not forked: a fork of a process whose torch thread pool has run can hang in torch."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        workers = multiprocessing.active_children()  # this process's only children are the pool's
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join()
        raise
    else:
        pool.shutdown()
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def measure_speed(model: torch.nn.Module, size: int, device: torch.device) -> dict[str, Any]:
    return {"gray": speed(model, 1, size), "rgb": speed(model, 3, size),
            "threads": torch.get_num_threads(), "size": size, "device": str(device)}


def evaluate_photo(args: argparse.Namespace, command: str) -> int:
    """Evaluate the photo checkpoint of ``args.checkpoint``; ``command`` is recorded."""
    sigmas = args.sigmas or DEFAULT_SIGMAS
    color_sigmas = args.color_sigmas or sigmas
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device or "cpu", exact=True)
    ckpt = load_photo(args.checkpoint, device)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.speed_only:
        return speed_only(ckpt.model, args, device, command)
    sets = [("bsd68", args.data_dir, 1, sigmas)]
    if args.color_data_dir:
        sets.append(("cbsd68", args.color_data_dir, 3, color_sigmas))
    metrics: dict[str, Any] = {"protocol": __doc__.split("Protocols. ")[1].split(" Writes")[0]}
    rows: list[list[np.ndarray]] = []
    loaded = []
    cap = sigma_cap(ckpt.config)
    for name, folder, channels, set_sigmas in sets:
        images = load_image_folder(Path(folder), channels)
        loaded.append((name, images[: args.limit] if args.limit else images, set_sigmas))
    cache = Bm3dCache(args.bm3d_cache)
    with bm3d_workers(max(1, args.bm3d_workers)) as pool:  # BM3D there, the model here
        jobs: dict[tuple[str, str, float], tuple[list[Job], list[str], int]] = {}
        for protocol in args.protocols:
            for name, images, set_sigmas in loaded:
                n_bm3d = min(args.bm3d_limit or len(images), len(images)) if args.bm3d else 0
                for sigma in set_sigmas:
                    jobs[protocol, name, sigma] = submit_bm3d(pool, cache, images, sigma,
                                                              protocol == "8bit", n_bm3d)
        for protocol in args.protocols:
            results: dict[str, Any] = metrics.setdefault(RESULT_KEYS[protocol], {})
            for name, images, set_sigmas in loaded:
                results[name] = {}
                for sigma in set_sigmas:
                    row: list[np.ndarray] = []
                    set_jobs, keys, cached = jobs[protocol, name, sigma]
                    results[name][f"{sigma:g}"] = result = evaluate_set(
                        ckpt.model, images, sigma, protocol == "8bit", args.known_sigma, row,
                        set_jobs, args.bm3d_limit or 0, cap)
                    rows.append(row)
                    if set_jobs:  # evaluate_set has waited for them
                        result["bm3d_cached"] = cached
                        for i, (key, job) in enumerate(zip(keys, set_jobs, strict=True)):
                            score, seconds, _ = job.result()
                            cache.put(key, score, seconds, set=name, image=i, sigma=sigma,
                                      protocol=protocol)
                        cache.save()
    metrics["speed_ms_per_mpx"] = measure_speed(ckpt.model, args.speed_size, device)
    metrics["command"] = command
    save_figure(rows, args.out / "figure.png")
    write_results(metrics, args)
    return 0


def speed_only(model: torch.nn.Module, args: argparse.Namespace, device: torch.device,
               command: str) -> int:
    """Re-time the model here and merge that into the metrics an earlier run wrote to ``--out``."""
    path = args.out / "metrics.json"
    if not path.is_file():
        raise UsageError(f"--speed-only: no {path} from an earlier evaluation to add the speed to")
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
