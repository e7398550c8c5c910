"""What the service adds to the photo denoiser: one image through HTTP against the same call in-process.

    python -m bench.photo [--checkpoints checkpoints] [--size 512] [--repeats 7]

Starts ``python -m app`` on a snapshot of ``photo-denoiser`` alone and, in this process, loads the same
checkpoint with the same torch threads. For a gray and an RGB ``size`` x ``size`` noisy image it
alternates one in-process ``denoise_image`` call and one ``POST /denoise`` of the PNG (one request at a
time, so neither waits for the other), and reports the medians and their ratio (target: at most 1.15).
Not part of CI.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from app.settings import Settings
from bench.report import save
from bench.run import ROOT, free_port, start
from bench.workload import snapshot_checkpoints
from model.photo.inference import denoise_image
from model.photo.pair import load_photo


def noisy_photo(size: int, channels: int, sigma: float = 25.0) -> np.ndarray:
    """A smooth synthetic scene with edges plus Gaussian noise, uint8 (H, W[, C])."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    planes = [128 + 90 * np.sin(6 * xx + 2 * c) * np.cos(4 * yy) + 40 * ((xx + yy) > 1)
              for c in range(channels)]
    clean = np.stack(planes, axis=-1)
    noisy = np.clip(np.round(clean + sigma * rng.standard_normal(clean.shape)), 0, 255).astype(np.uint8)
    return noisy[..., 0] if channels == 1 else noisy


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aeserve-photo-bench-"))
    snapshot = snapshot_checkpoints(args.checkpoints, work / "checkpoints", ("photo-denoiser",))
    settings = Settings()
    torch.set_num_threads(settings.torch_threads)
    device = settings.resolve_device()
    model = load_photo(snapshot / "photo-denoiser", device).model

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_")}
    env |= {"AESERVE_CHECKPOINT_DIR": str(snapshot), "AESERVE_PORT": str(port),
            "AESERVE_LOG_LEVEL": "warning"}
    url = f"http://127.0.0.1:{port}/v1/models/photo-denoiser/denoise"
    proc = start([sys.executable, "-m", "app"], env, f"http://127.0.0.1:{port}/readyz")
    rows = []
    try:
        with httpx.Client(timeout=120) as http:
            for channels, mode in ((1, "gray"), (3, "rgb")):
                arr = noisy_photo(args.size, channels)
                body = png_bytes(arr)
                x = torch.from_numpy(arr.astype(np.float32) / 255.0)
                x = x[None, None] if channels == 1 else x.permute(2, 0, 1)[None]
                inproc, served = [], []
                for i in range(args.repeats + 1):  # the first pair warms both up
                    tick = time.perf_counter()
                    with torch.inference_mode():
                        denoise_image(model, x)[0].cpu()
                    t_in = time.perf_counter() - tick
                    tick = time.perf_counter()
                    response = http.post(url, content=body, headers={"Content-Type": "image/png"})
                    t_srv = time.perf_counter() - tick
                    if response.status_code != 200:
                        raise SystemExit(f"service answered {response.status_code}: {response.text}")
                    if i:
                        inproc.append(t_in)
                        served.append(t_srv)
                rows.append({"mode": mode, "size": args.size,
                             "in_process_ms": 1000 * statistics.median(inproc),
                             "service_ms": 1000 * statistics.median(served)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work)

    lines = [f"Photo denoiser, one {args.size}x{args.size} image at a time, {args.repeats} alternating "
             f"pairs, device {device}, torch threads {settings.torch_threads}, {os.cpu_count()} cores; "
             "medians.", "",
             "| image | in-process ms | through the service ms | ratio (target <= 1.15) |",
             "|---|---:|---:|---:|"]
    for r in rows:
        r["ratio"] = r["service_ms"] / r["in_process_ms"]
        lines.append(f"| {r['mode']} {r['size']}x{r['size']} | {r['in_process_ms']:.0f} | "
                     f"{r['service_ms']:.0f} | {r['ratio']:.3f} |")
    table = "\n".join(lines)
    print(table)
    save(args.out, "photo", table, rows)


if __name__ == "__main__":
    main()
