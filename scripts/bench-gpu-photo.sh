#!/usr/bin/env bash
# The photo denoiser, one image at a time, for a gray and an RGB noisy image per size:
#   in-process: milliseconds, megapixels per second, peak GPU memory (torch.cuda.max_memory_allocated
#     and max_memory_reserved, reset per image);
#   through the service: `python -m app` serving photo-denoiser alone, POST /denoise of the PNG,
#     milliseconds and megapixels per second. Its work limits are raised (AESERVE_MAX_WORK and
#     AESERVE_QUEUE_WORK, default WORK=64 megapixel-equivalents) so that 2048² RGB is admitted.
# Medians of REPEATS after one warm-up each. The device is the service's choice (AESERVE_DEVICE,
# default auto); the checkpoint loader, the inference call and the test image are bench.photo's.
#
#   bash scripts/bench-gpu-photo.sh OUT.json REPEATS SIZE...      # e.g. out.json 3 512 2048
#
# Run by scripts/bench-gpu.sh; needs the repository root on PYTHONPATH.
set -eu
cd "$(dirname "$0")/.."
${PYTHON:-python3} - "$@" <<'PYEOF'
import json
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

import bench.photo as bp
from app.settings import Settings
from bench.run import free_port, start

out, repeats, sizes = Path(sys.argv[1]), int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
work_limit = os.environ.get("WORK", "64")
settings = Settings()
torch.set_num_threads(settings.torch_threads)
device = settings.resolve_device()
cuda = device.startswith("cuda")
tick = time.perf_counter()
model = bp.load_checkpoint(bp.ROOT / "checkpoints" / "photo-denoiser", device).model
load_s = time.perf_counter() - tick


def median_s(fn):
    times = []
    for i in range(repeats + 1):  # the first call warms up
        tick = time.perf_counter()
        fn()
        if i:
            times.append(time.perf_counter() - tick)
    return statistics.median(times)


images = {(size, mode): bp.noisy_photo(size, channels)
          for size in sizes for channels, mode in ((1, "gray"), (3, "rgb"))}
rows = []
for (size, mode), arr in images.items():
    x = torch.from_numpy(arr.astype(np.float32) / 255.0)
    x = x[None, None] if arr.ndim == 2 else x.permute(2, 0, 1)[None]
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def inproc():
        with torch.inference_mode():
            bp.denoise_image(model, x)[0].cpu()  # .cpu() waits for the GPU

    sec = median_s(inproc)
    row = {"size": size, "mode": mode, "ms": 1000 * sec, "mp_per_s": size * size / 1e6 / sec,
           "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
           "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20) if cuda else None}
    rows.append(row)
    print(json.dumps(row), flush=True)
info = {"device": device, "torch_threads": settings.torch_threads, "repeats": repeats,
        "load_s": round(load_s, 2), "service_max_work": work_limit,
        "gpu": torch.cuda.get_device_name(0) if cuda else None, "rows": rows}
out.write_text(json.dumps(info, indent=2) + "\n")  # kept if the service part fails
del model
if cuda:
    torch.cuda.empty_cache()

# through the service, on a snapshot of photo-denoiser alone
work = Path(tempfile.mkdtemp(prefix="aeserve-photo-gpu-"))
shutil.copytree(bp.ROOT / "checkpoints" / "photo-denoiser", work / "photo-denoiser",
                ignore=shutil.ignore_patterns(".*"))
port = free_port()
env = {k: v for k, v in os.environ.items() if not k.startswith("AESERVE_") or k == "AESERVE_DEVICE"}
env |= {"AESERVE_CHECKPOINT_DIR": str(work), "AESERVE_PORT": str(port), "AESERVE_LOG_LEVEL": "warning",
        "AESERVE_MAX_WORK": work_limit, "AESERVE_QUEUE_WORK": work_limit}
url = f"http://127.0.0.1:{port}/v1/models/photo-denoiser/denoise"
proc = start([sys.executable, "-m", "app"], env, f"http://127.0.0.1:{port}/readyz")
try:
    with httpx.Client(timeout=300) as http:
        for row in rows:
            body = bp.png_bytes(images[(row["size"], row["mode"])])

            def post():
                r = http.post(url, content=body, headers={"Content-Type": "image/png"})
                if r.status_code != 200:
                    raise SystemExit(f"service answered {r.status_code}: {r.text[:300]}")

            sec = median_s(post)
            row |= {"png_mib": round(len(body) / 2**20, 2), "service_ms": 1000 * sec,
                    "service_mp_per_s": row["size"] ** 2 / 1e6 / sec}
            print(json.dumps(row), flush=True)
finally:
    proc.terminate()
    proc.wait(timeout=60)
    shutil.rmtree(work)
out.write_text(json.dumps(info, indent=2) + "\n")
PYEOF
