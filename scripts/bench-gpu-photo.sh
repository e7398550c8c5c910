#!/usr/bin/env bash
# The photo denoiser in-process, one image at a time: milliseconds, megapixels per second and peak
# GPU memory (torch.cuda.max_memory_allocated / max_memory_reserved, reset per image) for a gray and
# an RGB noisy image per size. The device is the service's choice (AESERVE_DEVICE, default auto);
# the checkpoint, the inference call and the test image are bench.photo's own.
#
#   bash scripts/bench-gpu-photo.sh OUT.json REPEATS SIZE...      # e.g. out.json 5 512 2048
#
# Run by scripts/bench-gpu.sh; needs the repository root on PYTHONPATH.
set -eu
cd "$(dirname "$0")/.."
${PYTHON:-python3} - "$@" <<'PYEOF'
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import bench.photo as bp
from app.settings import Settings

out, repeats, sizes = Path(sys.argv[1]), int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
settings = Settings()
torch.set_num_threads(settings.torch_threads)
device = settings.resolve_device()
cuda = device.startswith("cuda")
tick = time.perf_counter()
model = bp.load_checkpoint(bp.ROOT / "checkpoints" / "photo-denoiser", device).model
load_s = time.perf_counter() - tick
rows = []
for size in sizes:
    for channels, mode in ((1, "gray"), (3, "rgb")):
        arr = bp.noisy_photo(size, channels)
        x = torch.from_numpy(arr.astype(np.float32) / 255.0)
        x = x[None, None] if channels == 1 else x.permute(2, 0, 1)[None]
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(repeats + 1):  # the first call warms up
            tick = time.perf_counter()
            with torch.inference_mode():
                bp.denoise_image(model, x)[0].cpu()  # .cpu() waits for the GPU
            if i:
                times.append(time.perf_counter() - tick)
        sec = statistics.median(times)
        row = {"size": size, "mode": mode, "ms": 1000 * sec, "mp_per_s": size * size / 1e6 / sec,
               "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
               "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20) if cuda else None}
        rows.append(row)
        print(json.dumps(row), flush=True)
info = {"device": device, "torch_threads": settings.torch_threads, "repeats": repeats,
        "load_s": round(load_s, 2), "gpu": torch.cuda.get_device_name(0) if cuda else None, "rows": rows}
out.write_text(json.dumps(info, indent=2) + "\n")
PYEOF
