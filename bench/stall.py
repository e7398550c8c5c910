"""The event loop under uploads of a few pixels behind megabytes of container data.

    python -m bench.stall [--baseline REV] [--megabytes 20] [--rounds 3]

A real server (one process, default settings but one torch thread) per checkout: this tree and,
with ``--baseline``, a git worktree of REV, started in turn, round by round. Each round sends, one
at a time, uploads within the body limit that decode to 8x8 pixels: a 16-bit gray PNG behind
empty private chunks (Pillow walks each chunk), and a JPEG behind empty comment markers. While
each upload is read and answered, ``/healthz`` is asked every 50 ms on its own connection; the
figure is the longest a health check took (what a Kubernetes probe would see) and the median, with
the upload's status and seconds. Writes the raw numbers to ``--out``. Not part of CI.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import struct
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bench.run import ROOT, checkouts, free_port, start

DENOISE = "/v1/models/mnist-dae/denoise?resize=true"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_behind_chunks(size: int) -> bytes:
    """An 8x8 16-bit gray PNG with empty private chunks before its pixels, ``size`` bytes or so."""
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 16, 0, 0, 0, 0))
    tail = _chunk(b"IDAT", zlib.compress((b"\0" + bytes(16)) * 8)) + _chunk(b"IEND", b"")
    empty = _chunk(b"prVt", b"")
    return head + empty * ((size - len(head) - len(tail)) // len(empty)) + tail


def jpeg_behind_markers(size: int) -> bytes:
    """An 8x8 gray JPEG with empty comment markers after its start marker, ``size`` bytes or so."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    return jpeg[:2] + b"\xff\xfe\x00\x02" * ((size - len(jpeg)) // 4) + jpeg[2:]


PAYLOADS: dict[str, tuple[Callable[[int], bytes], str]] = {
    "png-chunks": (png_behind_chunks, "image/png"),
    "jpeg-markers": (jpeg_behind_markers, "image/jpeg"),
}


def watched(base: str, body: bytes, ctype: str) -> dict[str, Any]:
    """Post ``body`` while a thread asks ``/healthz`` every 50 ms; the upload's answer and the
    health checks' seconds."""
    checks: list[float] = []
    done = threading.Event()

    def health() -> None:
        with httpx.Client(timeout=120) as http:
            while not done.is_set():
                tick = time.perf_counter()
                http.get(f"{base}/healthz")
                checks.append(time.perf_counter() - tick)
                done.wait(0.05)

    watcher = threading.Thread(target=health)
    watcher.start()
    tick = time.perf_counter()
    response = httpx.post(base + DENOISE, content=body, headers={"Content-Type": ctype}, timeout=300)
    took = time.perf_counter() - tick
    done.set()
    watcher.join()
    return {"status": response.status_code, "s": round(took, 3), "checks": len(checks),
            "health_max_s": round(max(checks), 3), "health_median_s": round(statistics.median(checks), 4)}


def round_on(root: Path, bodies: dict[str, bytes]) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "AESERVE_PORT": str(port), "AESERVE_TORCH_THREADS": "1",
           "AESERVE_LOG_LEVEL": "warning", "AESERVE_CHECKPOINT_DIR": str(ROOT / "checkpoints"),
           "PYTHONPATH": str(root)}
    base = f"http://127.0.0.1:{port}"
    proc = start([sys.executable, "-m", "app"], env, f"{base}/readyz", cwd=root)
    try:
        return {name: watched(base, body, PAYLOADS[name][1]) for name, body in bodies.items()}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", help="a git revision to compare with (run from a worktree)")
    p.add_argument("--megabytes", type=float, default=19.5, help="each upload's size (MiB)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args()
    size = int(args.megabytes * 2**20)
    bodies = {name: make(size) for name, (make, _) in PAYLOADS.items()}
    with checkouts(args.baseline) as trees:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for r in range(args.rounds):  # interleaved: the machine's drift hits both alike
            for name, root in trees.items():
                runs[name].append(round_on(root, bodies))
                print(f"round {r + 1} {name}: {runs[name][-1]}", file=sys.stderr)
    summary = {
        name: {payload: {key: statistics.median(r[payload][key] for r in rounds)
                         for key in ("s", "health_max_s", "health_median_s")}
               | {"statuses": sorted({r[payload]["status"] for r in rounds})}
               for payload in PAYLOADS}
        for name, rounds in runs.items()
    }
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / time.strftime("%Y%m%d-%H%M%S-stall.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
